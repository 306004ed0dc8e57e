"""The LLM layer without a model: prompts on real samples, post-processing, errors that say what to do."""
import re
import socket

import pytest

from modeling.importers.service import dataset_import
from modeling.llm.backends import (
    GenerationSettings,
    LLMBackendError,
    OpenAICompatibleBackend,
    generation_cache_key,
    parse_openai_model_id,
)
from modeling.llm.loading import ModelNotFound, load_causal_lm, resolve_model
from modeling.llm.postprocess import clean_response
from modeling.llm.prompts import (
    AUGMENT_TEMPLATES,
    ICLExample,
    UnknownPromptVersion,
    augment_template,
    icl_template,
    split_history,
)
from modeling.llm_services import LLMServiceError, augment_dataset, icl_generate
from modeling.models import Sample
from tests.conftest import shared_file

pytestmark = pytest.mark.django_db


def _persona_lines(sample: Sample) -> list[str]:
    """The persona's facts: SPC sentences, PFG 'key: value' items."""
    parts = re.split(r"\n|, (?=[a-z_]+: )", sample.agent_persona)
    return [p.strip() for p in parts if len(p.strip()) > 8]


def _prompt_text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages)


@pytest.mark.parametrize("kind,relative", [("spc", "spc/Synthetic-Persona-Chat_test.csv"), ("pfg", "pfg")])
def test_augment_prompt_withholds_persona_and_sets_last_user_apart(kind, relative):
    dataset_import(kind=kind, path=shared_file(relative), limit=3, split="test")
    samples = list(Sample.objects.filter(dataset__name=kind).order_by("pk"))
    assert len(samples) > 5
    template = augment_template(kind)
    assert template.version == f"{kind}-v1"
    checked = 0
    for sample in samples:
        messages = template.messages(history=sample.history)
        system, user = messages[0]["content"], messages[1]["content"]
        assert [m["role"] for m in messages] == ["system", "user"]
        assert template.scenario in system and "neutral" in system
        # Section 3.1: the persona is withheld unless the history itself discusses it.
        history_text = " ".join(t["text"] for t in sample.history)
        for line in _persona_lines(sample):
            if line not in history_text:
                assert line not in _prompt_text(messages)
                checked += 1
        # The last user utterance is set apart, after the earlier history.
        last = sample.history[-1]["text"].strip()
        head, _, tail = user.partition("Last user utterance:")
        assert tail.strip().startswith(f"<user> {last}")
        for turn in sample.history[:-1]:
            assert turn["text"].strip() in head
        assert sample.reference not in user
    assert checked > 20
    if kind == "pfg":
        assert "Save the Children" in template.scenario


def test_icl_prompts_show_persona_examples_and_the_generic_response():
    dataset_import(kind="spc", path=shared_file("spc/Synthetic-Persona-Chat_test.csv"), limit=2, split="test")
    target, shot = list(Sample.objects.order_by("pk"))[-1], Sample.objects.order_by("pk").first()
    example = ICLExample(persona=shot.agent_persona, history=shot.history, generic_response="Okay.",
                         response=shot.reference)
    hist = icl_template("icl_hist", "spc").messages(persona=target.agent_persona, history=target.history,
                                                     examples=[example])
    text = _prompt_text(hist)
    assert target.agent_persona.split("\n")[0] in text and shot.reference in text
    assert text.index("Example 1:") < text.index("Now your turn:")
    assert text.rstrip().endswith("Response:")
    tst = icl_template("icl_tst", "spc").messages(persona=target.agent_persona, history=target.history,
                                                   generic_response="That sounds nice.")
    assert "That sounds nice." in _prompt_text(tst) and "rewrite" in tst[0]["content"]
    assert target.history[-1]["text"] not in _prompt_text(tst)  # TST sees persona + R_G only


def test_templates_exist_for_every_dataset_and_unknown_versions_are_named():
    assert {"spc-v1", "pfg-v1", "ed-v1", "convai2-v1"} <= set(AUGMENT_TEMPLATES)
    with pytest.raises(UnknownPromptVersion, match="spc-v9.*known: .*spc-v1"):
        augment_template("spc", "spc-v9")
    with pytest.raises(ValueError, match="end with a user turn"):
        split_history([{"role": "user", "text": "hi"}, {"role": "agent", "text": "hello"}])


@pytest.mark.parametrize("raw,expected", [
    ("<agent> Hello there, how are you?", "Hello there, how are you?"),
    ("Agent: I like hiking.\nUser: me too!", "I like hiking."),
    ("Sure! Here's a neutral response:\n\n\"That sounds like a good plan.\"", "That sounds like a good plan."),
    ("**Agent:** Nice to meet you.\n\nNote: this response is neutral.", "Nice to meet you."),
    ("I see. What do you do for work?\n<user> I am a teacher.", "I see. What do you do for work?"),
    ("That is great. <user> Thanks! <agent> You're welcome.", "That is great."),
    ("Response: It can help a lot of children.<|im_end|>", "It can help a lot of children."),
    ("  I have two dogs,\nand a cat.  ", "I have two dogs, and a cat."),
    ("", ""),
])
def test_clean_response_keeps_one_response_without_tags_or_chatter(raw, expected):
    assert clean_response(raw) == expected


def test_missing_model_fails_at_once_naming_the_model_and_how_to_provide_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelNotFound) as info:
        resolve_model("no-such-org/no-such-model-7b")
    message = str(info.value)
    assert "'no-such-org/no-such-model-7b'" in message
    assert "huggingface-cli download no-such-org/no-such-model-7b" in message
    assert str(tmp_path / "no-such-org/no-such-model-7b") in message and "smollm2" in message
    with pytest.raises(ModelNotFound, match="no-such-org/no-such-model-7b"):
        load_causal_lm("no-such-org/no-such-model-7b")


def test_augment_with_a_missing_model_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MODELS_DIR", str(tmp_path))
    dataset = dataset_import(kind="spc", path=shared_file("spc/Synthetic-Persona-Chat_test.csv"), limit=1, split="test")
    from modeling.models import Dataset, LLMCache

    with pytest.raises(ModelNotFound, match="missing-org/missing-model"):
        augment_dataset(dataset=Dataset.objects.get(name=dataset.dataset), split="test", model_id="missing-org/missing-model")
    assert not Sample.objects.exclude(generic_response="").exists() and not LLMCache.objects.exists()


def test_icl_refuses_what_it_cannot_do_before_loading_a_model():
    from modeling.models import Dataset

    dataset_import(kind="spc", path=shared_file("spc/Synthetic-Persona-Chat_test.csv"), limit=1, split="test")
    dataset = Dataset.objects.get(name="spc")
    with pytest.raises(LLMServiceError, match="have none .*run `augment --dataset spc --split test`"):
        icl_generate(dataset=dataset, split="test", method="icl_tst", model_id="missing-org/missing-model")
    with pytest.raises(LLMServiceError, match="needs 2 demonstrations from split 'train'.*only 0 exist"):
        icl_generate(dataset=dataset, split="test", method="icl_hist", n_shot=2, model_id="missing-org/missing-model")
    with pytest.raises(LLMServiceError, match="between 0 and 5"):
        icl_generate(dataset=dataset, split="test", method="icl_hist", n_shot=6)
    with pytest.raises(LLMServiceError, match="no samples in split 'train' \\(it has: test\\)"):
        icl_generate(dataset=dataset, split="train", method="icl_hist")


def test_openai_compatible_backend_reports_an_unreachable_server():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model, base_url = parse_openai_model_id(f"openai:Qwen/Qwen2.5-32B-Instruct@http://127.0.0.1:{port}/v1")
    backend = OpenAICompatibleBackend(model, base_url, timeout=5)
    with pytest.raises(LLMBackendError, match=rf"http://127.0.0.1:{port}/v1/chat/completions.*Is it running"):
        backend.generate([[{"role": "user", "content": "hi"}]])
    with pytest.raises(LLMBackendError, match="openai:<model>@<base url>"):
        parse_openai_model_id("openai:no-url")


def test_generation_cache_key_changes_with_prompt_and_settings():
    messages = [{"role": "user", "content": "hi"}]
    base = generation_cache_key(messages=messages, settings=GenerationSettings())
    assert base == generation_cache_key(messages=[dict(m) for m in messages], settings=GenerationSettings())
    assert base != generation_cache_key(messages=[{"role": "user", "content": "hi!"}], settings=GenerationSettings())
    assert base != generation_cache_key(messages=messages, settings=GenerationSettings(max_new_tokens=65))


def test_icl_metrics_average_over_the_seeds_of_one_setting():
    from modeling.llm_services import icl_seed_group_metrics
    from modeling.models import MetricResult, System

    group = "spc-icl_hist-2shot-smollm2"
    for seed, bleu in ((0, 2.0), (1, 4.0), (2, 9.0)):
        system = System.objects.create(name=f"spc-icl_hist-2shot-seed{seed}-smollm2", method="icl_hist",
                                       config={"seed_group": group, "seed": seed})
        MetricResult.objects.create(system=system, split="test", name="bleu", value=bleu)
        if seed:
            MetricResult.objects.create(system=system, split="test", name="char_f1", value=0.1 * seed)
    System.objects.create(name="other", method="icl_hist", config={"seed_group": "spc-icl_hist-3shot-smollm2"})
    result = icl_seed_group_metrics(seed_group=group)
    assert len(result["systems"]) == 3
    assert result["metrics"]["bleu"] == pytest.approx(5.0) and result["seeds"]["bleu"] == 3
    assert result["metrics"]["char_f1"] == pytest.approx(0.15) and result["seeds"]["char_f1"] == 2
    with pytest.raises(LLMServiceError, match="No ICL systems in seed group 'nope'"):
        icl_seed_group_metrics(seed_group="nope")


def test_commands_refuse_bad_input_with_a_message():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="No dataset named 'nope'"):
        call_command("augment", "--dataset", "nope")
    dataset_import(kind="spc", path=shared_file("spc/Synthetic-Persona-Chat_test.csv"), limit=1, split="test")
    with pytest.raises(CommandError, match="no samples in split 'train'"):
        call_command("augment", "--dataset", "spc", "--split", "train")
    with pytest.raises(CommandError, match="--seeds must be comma-separated integers"):
        call_command("run_icl", "--dataset", "spc", "--method", "icl_hist", "--seeds", "a,b")
    with pytest.raises(CommandError, match="run `augment --dataset spc --split test` first"):
        call_command("run_icl", "--dataset", "spc", "--method", "icl_tst")
    with pytest.raises(CommandError, match="Model 'missing/model' is not on this machine"):
        call_command("augment", "--dataset", "spc", "--split", "test", "--model", "missing/model")
    assert not Sample.objects.exclude(generic_response="").exists()
