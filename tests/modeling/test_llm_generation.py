"""Real generation with the offline default model (SmolLM2-135M-Instruct), loaded once for the module."""
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from modeling.importers.service import dataset_import
from modeling.llm.backends import GenerationSettings, TransformersBackend
from modeling.llm.prompts import augment_template
from modeling.llm_services import augment_dataset, icl_generate
from modeling.models import Dataset, LLMCache, Response, Sample, System
from modeling.progress import Cancelled
from tests.conftest import shared_file

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
SPC_TEST = "spc/Synthetic-Persona-Chat_test.csv"
SHORT = GenerationSettings(max_new_tokens=16)


@pytest.fixture(scope="module")
def smollm2():
    import torch

    threads = torch.get_num_threads()
    # One thread: the test machine's 2 cores are shared with other test processes.
    backend = TransformersBackend("smollm2", cpu_threads=1)
    yield backend
    torch.set_num_threads(threads)


class CountingBackend:
    """The real backend, recording which prompts reach the model (to prove what a rerun skips)."""

    def __init__(self, backend):
        self.backend, self.model_id, self.prompts = backend, backend.model_id, []

    def generate(self, prompts, **kwargs):
        self.prompts.extend(prompts)
        return self.backend.generate(prompts, **kwargs)


def _spc(limit_conversations: int = 1, split: str = "test") -> Dataset:
    dataset_import(kind="spc", path=shared_file(SPC_TEST), limit=limit_conversations, split=split)
    return Dataset.objects.get(name="spc")


def test_batched_generation_matches_one_at_a_time_and_keeps_order(smollm2):
    dataset = _spc()
    template = augment_template("spc")
    samples = list(dataset.samples.order_by("pk")[:3])
    prompts = [template.messages(history=s.history) for s in samples]
    one_by_one = [smollm2.generate([p], settings=SHORT, batch_size=1)[0] for p in prompts]
    batched = smollm2.generate(prompts, settings=SHORT, batch_size=3)
    assert all(text.strip() for text in batched)
    # Left padding with an attention mask: greedy decoding gives the same text as unbatched.
    assert batched == one_by_one
    assert len(set(batched)) > 1  # different histories, different answers


def _next_token_logits(backend, rows):
    """The model's logits for each prompt's next token, from the cache ``prompt_pass`` builds."""
    import torch

    prefix, prefix_cache = backend.shared_prefix(rows)
    input_ids, attention, cache = backend.prompt_pass(rows, prefix=prefix, prefix_cache=prefix_cache, room=1)
    cached = cache.get_seq_length()
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = backend.model(input_ids=input_ids[:, cached:], attention_mask=attention,
                            position_ids=positions[:, cached:], cache=cache, logits_to_keep=1)
    return out.logits[:, -1]


@pytest.mark.parametrize("prefix_cache", [True, False], ids=["shared-prefix", "no-prefix"])
def test_a_prompt_pass_in_parts_gives_what_one_pass_does(smollm2, prefix_cache):
    # CPU batches encode their prompts a few at a time into one cache and decode together
    # (prefill_rows); for prompts of very different lengths that must change nothing.
    samples = list(_spc().samples.order_by("pk"))
    template = augment_template("spc")
    prompts = [template.messages(history=s.history) for s in samples[::2][:6]]
    rows = sorted((smollm2.encode(p) for p in prompts), key=len, reverse=True)
    assert len(rows[0]) - len(rows[-1]) > 100  # a real spread of pads between the parts
    saved = smollm2.prefill_rows, smollm2.prefix_cache
    try:
        smollm2.prefix_cache = prefix_cache
        smollm2.prefill_rows = 0
        one_pass = smollm2.generate(prompts, settings=SHORT, batch_size=6)
        one_pass_logits = _next_token_logits(smollm2, rows)
        smollm2.prefill_rows = 2
        in_parts = smollm2.generate(prompts, settings=SHORT, batch_size=6)
        in_parts_logits = _next_token_logits(smollm2, rows)
    finally:
        smollm2.prefill_rows, smollm2.prefix_cache = saved
    assert in_parts_logits.shape == (6, len(smollm2.tokenizer))
    assert (in_parts_logits - one_pass_logits).abs().max().item() < 1e-3
    assert all(text.strip() for text in in_parts)
    assert in_parts == one_pass


def test_reserved_cache_layers_hold_what_concatenation_would():
    import torch
    from transformers import LlamaConfig

    from modeling.llm.backends import reserved_cache

    config = LlamaConfig(num_hidden_layers=1, num_key_value_heads=2, num_attention_heads=2, hidden_size=8)
    cache = reserved_cache(config, capacity=4, batch_size=3)
    layer = cache.layers[0]
    chunks = [torch.randn(3, 2, n, 4) for n in (3, 1, 2)]  # the third overflows the reserved 4 positions
    for chunk in chunks:
        keys, values = layer.update(chunk, -chunk)
    assert torch.equal(keys, torch.cat(chunks, dim=-2)) and torch.equal(values, -keys)
    assert cache.get_seq_length() == 6
    # Beam search and finished-row removal replace the tensors; the next step must keep the selection.
    layer.batch_select_indices(torch.tensor([2, 0]))
    step = torch.randn(2, 2, 1, 4)
    keys, _ = layer.update(step, -step)
    assert torch.equal(keys, torch.cat([torch.cat(chunks, dim=-2)[[2, 0]], step], dim=-2))


def test_4bit_loads_start_from_a_float32_copy_of_the_gguf(smollm2, monkeypatch, tmp_path):
    # bitsandbytes quantises float weights as they load, so a GGUF (already Q4_1, with its own
    # quantisation marker) must not reach it: unquantised_source writes and returns the plain copy.
    import torch
    from transformers import AutoModelForCausalLM

    from modeling.llm.loading import resolve_model, unquantised_source

    monkeypatch.setenv("MODELS_DIR", str(tmp_path))
    assert resolve_model("smollm2").gguf_file  # nothing cached in this MODELS_DIR yet
    source = unquantised_source("smollm2")
    assert source.gguf_file is None and Path(source.path).parent == tmp_path / ".cache"
    config = json.loads((Path(source.path) / "config.json").read_text())
    assert "quantization_config" not in config and config["torch_dtype"] == "float32"
    copy = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32)
    for name in ("model.embed_tokens.weight", "model.layers.29.mlp.down_proj.weight"):
        assert torch.equal(copy.get_parameter(name), smollm2.model.get_parameter(name)), name
    assert unquantised_source("smollm2") == source  # a second call reads the copy


def test_augment_stores_generic_responses_and_a_rerun_costs_nothing(smollm2):
    dataset = _spc()
    counting = CountingBackend(smollm2)
    reports = []
    summary = augment_dataset(dataset=dataset, split="test", limit=4, batch_size=4, backend=counting,
                              settings=SHORT, progress=lambda done, total: reports.append((done, total)))
    assert summary | {"seconds": 0, "degenerate": None} == {
        "dataset": "spc", "split": "test", "model": "smollm2", "prompt_version": "spc-v1", "samples": 4,
        "already_done": 0, "generated": 4, "cached": 0, "empty": 0, "seconds": 0, "degenerate": None,
    }
    assert summary["degenerate"]["checked"] == 4  # tests/modeling/test_degenerate.py checks the flags
    assert reports[0] == (0, 4) and reports[-1] == (4, 4)
    samples = list(dataset.samples.order_by("pk")[:4])
    for sample in samples:
        assert sample.generic_response and sample.generic_model == "smollm2"
        assert sample.generic_prompt_version == "spc-v1"
        assert "<agent>" not in sample.generic_response and "\n" not in sample.generic_response
    assert LLMCache.objects.filter(model_id="smollm2", prompt_version="spc-v1").count() == 4

    # Rerun: every sample is done; nothing reaches the model.
    again = augment_dataset(dataset=dataset, split="test", limit=4, backend=counting, settings=SHORT)
    assert (again["already_done"], again["generated"], len(counting.prompts)) == (4, 0, 4)
    # R_G lost (e.g. a re-import with other options): answered from the cache, identical.
    before = {s.pk: s.generic_response for s in samples}
    Sample.objects.filter(pk__in=before).update(generic_response="")
    cached = augment_dataset(dataset=dataset, split="test", limit=4, backend=counting, settings=SHORT)
    assert (cached["cached"], cached["generated"], len(counting.prompts)) == (4, 0, 4)
    assert {s.pk: s.generic_response for s in Sample.objects.filter(pk__in=before)} == before


def test_a_killed_augmentation_resumes_where_it_stopped(smollm2):
    dataset = _spc()

    def cancel_after_first_batch(done, total):
        if done >= 2:
            raise Cancelled("admin pressed stop")

    first = CountingBackend(smollm2)
    with pytest.raises(Cancelled):
        augment_dataset(dataset=dataset, split="test", limit=4, batch_size=2, backend=first, settings=SHORT,
                        progress=cancel_after_first_batch)
    # The batch that finished before the stop is committed; generation stopped right after it.
    done_keys = set(dataset.samples.exclude(generic_response="").values_list("key", flat=True))
    assert len(done_keys) == 2 and LLMCache.objects.count() == 2

    resumed = CountingBackend(smollm2)
    summary = augment_dataset(dataset=dataset, split="test", limit=4, batch_size=2, backend=resumed, settings=SHORT)
    assert (summary["already_done"], summary["generated"], len(resumed.prompts)) == (2, 2, 2)
    template = augment_template("spc")
    regenerated = {json.dumps(p) for p in resumed.prompts}
    for sample in dataset.samples.filter(key__in=done_keys):
        assert json.dumps(template.messages(history=sample.history)) not in regenerated
    assert all(s.generic_response for s in dataset.samples.order_by("pk")[:4])


def test_icl_baselines_store_one_system_per_seed(smollm2):
    dataset_import(kind="spc", path=shared_file("spc/Synthetic-Persona-Chat_valid.csv"), limit=2, split="train")
    dataset = _spc()
    systems = icl_generate(dataset=dataset, split="test", method="icl_hist", n_shot=1, seeds=[0, 1], limit=1,
                           backend=smollm2, settings=SHORT)
    assert [s.name for s in systems] == ["spc-icl_hist-1shot-seed0-smollm2", "spc-icl_hist-1shot-seed1-smollm2"]
    for system in systems:
        assert system.method == "icl_hist" and system.status == System.Status.GENERATED
        assert system.config["seed_group"] == "spc-icl_hist-1shot-smollm2"
        assert len(system.config["shot_keys"]) == 1 and system.config["shot_keys"][0].startswith("spc/train/")
        responses = list(system.responses.all())
        assert len(responses) == 1 and all(r.text.strip() for r in responses)
    # ICL(TST) rewrites R_G: after augmenting, 0-shot gives one system (nothing random to seed).
    augment_dataset(dataset=dataset, split="test", limit=1, backend=smollm2, settings=SHORT)
    tst = icl_generate(dataset=dataset, split="test", method="icl_tst", n_shot=0, seeds=[0, 1, 2], limit=1,
                       backend=smollm2, settings=SHORT)
    assert [s.name for s in tst] == ["spc-icl_tst-0shot-smollm2"]
    assert Response.objects.filter(system=tst[0]).count() == 1


def test_augment_command_prints_one_json_line(smollm2, capsys):
    _spc()
    call_command("augment", "--dataset", "spc", "--split", "test", "--limit", "1")
    summary = json.loads(capsys.readouterr().out.strip())
    assert (summary["samples"], summary["generated"] + summary["cached"], summary["model"]) == (1, 1, "smollm2")
    assert Sample.objects.exclude(generic_response="").filter(generic_prompt_version="spc-v1").count() == 1
