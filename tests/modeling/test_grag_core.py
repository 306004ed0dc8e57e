"""GRAG's ML core on tiny in-process backbones with the real SmolLM2 tokenizer (no Django)."""
import json
import math
import subprocess
import sys

import pytest
import torch

from modeling.grag.config import GRAGConfig, sweep_configs
from modeling.grag.generate import generate_responses, score_reference
from modeling.grag.inputs import AGENT, AGENT_PERSONA, USER, USER_PERSONA, DialogueSample, InputBuilder
from modeling.grag.losses import cjepa_loss, last_token
from modeling.grag.model import build_model, load_model
from modeling.grag.train import get_lr, train
from modeling.llm.loading import ModelNotFound

RUN = DialogueSample(
    history=[
        {"role": "user", "text": "Hi! How are you today?"},
        {"role": "agent", "text": "Great, I just got back from a long run."},
        {"role": "user", "text": "Nice, do you run often?"},
    ],
    reference="Every morning! I am training for a marathon with my dog Max.",
    generic_response="Yes, I run regularly.",
    agent_persona="I love running. I have a dog named Max.",
    user_persona="I am a teacher.",
    key="demo/train/1/3",
)
COOK = DialogueSample(
    history=[{"role": "user", "text": "What do you like to cook?"}],
    reference="Vegan pasta, always with lots of garlic.",
    generic_response="I cook many different things.",
    agent_persona="I am vegan. I love garlic.",
    key="demo/train/2/1",
)
SAMPLES = [RUN, COOK]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The CPU is shared; one intra-op thread avoids spin-waiting against other processes.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def batch_of(model, tok, config, samples=SAMPLES):
    builder = InputBuilder(tok, config, is_encoder_decoder=model.is_encoder_decoder)
    return builder.collate([builder.features(s) for s in samples])


# -- inputs -------------------------------------------------------------------------------------
def test_inputs_are_tagged_per_method_and_truncation_keeps_persona_and_latest_turns():
    config = GRAGConfig(method="pregrag", backbone="tiny:llama", max_source_len=40)
    model, tok = build_model(config)
    long_history = [{"role": "user" if i % 2 == 0 else "agent", "text": f"turn number {i} " + "blah " * 6} for i in range(9)]
    sample = DialogueSample(history=long_history, reference="ok", generic_response="Sure thing.",
                            agent_persona="I have two cats.", user_persona="I like tea.")
    builder = InputBuilder(tok, config, is_encoder_decoder=False)
    text = tok.decode(builder.features(sample).context)
    assert len(builder.features(sample).context) <= 40
    assert text.startswith(f"{USER_PERSONA} I like tea. {AGENT_PERSONA} I have two cats.")
    assert "turn number 8" in text and "turn number 0" not in text  # newest kept, oldest dropped
    assert text.rstrip().endswith(f"{AGENT} Sure thing.")  # H' = [P; H; R_G]

    for method, has_history, has_generic in [("presft_hist", True, False), ("presft_tst", False, True)]:
        b = InputBuilder(tok, config.replace(method=method), is_encoder_decoder=False)
        ctx = tok.decode(b.features(RUN).context)
        assert ("Nice, do you run often?" in ctx) is has_history
        assert ("Yes, I run regularly." in ctx) is has_generic
        assert ctx.startswith(USER_PERSONA)
    post = InputBuilder(tok, config.replace(method="postgrag"), is_encoder_decoder=False).features(RUN)
    assert tok.decode(post.history).startswith(f"{USER} Hi!") and tok.decode(post.persona).startswith(USER_PERSONA)
    assert tok.decode(post.generic) == f"{AGENT} Yes, I run regularly."


# -- losses and shapes ----------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["tiny:bart", "tiny:llama"])
@pytest.mark.parametrize("method", ["presft_hist", "presft_tst", "pregrag", "postgrag"])
def test_each_method_gives_its_loss_terms_and_gradients(backbone, method):
    config = GRAGConfig(method=method, backbone=backbone, alpha=0.5, beta=0.1)
    model, tok = build_model(config)
    out = model(batch_of(model, tok, config))
    expected = {"presft_hist": {"l_p"}, "presft_tst": {"l_p"}, "pregrag": {"l_p", "l_cjepa"}, "postgrag": {"l_p", "l_g", "l_cjepa"}}[method]
    assert {k for k in ("l_p", "l_g", "l_cjepa") if k in out} == expected
    total = out["l_p"] + 0.5 * out.get("l_g", 0) + 0.1 * out.get("l_cjepa", 0)
    assert torch.isclose(out["loss"], total)
    assert math.log(len(tok)) * 0.8 < out["l_p"].item() < math.log(len(tok)) * 1.2  # random model: ~uniform
    assert out["nll"].shape == (2,) and (out["n_tokens"] > 0).all()
    out["loss"].backward()
    if method == "postgrag":
        # the style extractors receive gradient through the decoder (their output layer starts at 0)
        assert model.se_p.attention.out_proj.weight.grad.abs().sum() > 0
        assert model.se_g.attention.out_proj.weight.grad.abs().sum() > 0


def test_decoder_only_postgrag_decodes_from_the_cache_of_h_like_one_pass_over_h_and_the_response():
    config = GRAGConfig(method="postgrag", backbone="tiny:llama", alpha=0.5, beta=0.1)
    model, tok = build_model(config)
    model.eval()
    out = model(batch_of(model, tok, config))
    builder = InputBuilder(tok, config, is_encoder_decoder=False)
    for i, sample in enumerate(SAMPLES):
        f = builder.features(sample)
        seq = torch.tensor([f.history + [model.agent_token_id] + f.target])
        logp = torch.log_softmax(model.backbone(input_ids=seq).logits[0], -1)
        n = len(f.history)
        nll = -sum(float(logp[n + j, f.target[j]]) for j in range(len(f.target) - 1))
        assert out["nll"][i].item() == pytest.approx(nll, rel=1e-4)  # S_P is 0 at init (zero-init)


def _layer_outputs(model, run):
    """Each decoder layer's output (after the style hook, which was registered first)."""
    from modeling.grag.modules import decoder_layers

    seen = []

    def probe(module, args, output):
        seen.append((output[0] if isinstance(output, tuple) else output).detach().clone())

    hooks = [layer.register_forward_hook(probe) for layer in decoder_layers(model.backbone)]
    try:
        result = run()
    finally:
        for h in hooks:
            h.remove()
    return seen, result


@pytest.mark.parametrize("backbone", ["tiny:bart", "tiny:t5", "tiny:llama", "tiny:gpt2"])
def test_style_vector_is_added_to_the_hidden_state_of_every_decoder_layer(backbone):
    config = GRAGConfig(method="postgrag", backbone=backbone)
    model, tok = build_model(config)
    model.eval()
    batch = batch_of(model, tok, config)
    labels = model._labels(batch["target_ids"], batch["target_mask"])
    enc = model.encode_segments({"history": (batch["history_ids"], batch["history_mask"])}, cache_for={"history"})
    e_h, m_h, kv = enc["history"]

    def decode():
        if model.is_encoder_decoder:
            return model.decode_from_encoder(e_h, m_h, labels)
        return model.decode_from_cache(kv, m_h, labels)[0]

    with torch.no_grad():
        plain, plain_logits = _layer_outputs(model, decode)
        style = torch.randn(2, e_h.size(-1))
        with model.style.applied(style):
            styled, styled_logits = _layer_outputs(model, decode)
    assert len(plain) == len(styled) >= 2
    # h_1 <- S_P + h_1 exactly (same input), and the change propagates through later layers.
    torch.testing.assert_close(styled[0] - plain[0], style[:, None, :].expand_as(plain[0]), rtol=1e-4, atol=1e-4)
    assert all(not torch.allclose(a, b) for a, b in zip(plain, styled))
    assert not torch.allclose(plain_logits, styled_logits)
    # outside ``applied`` the decoder is untouched again
    with torch.no_grad():
        again, _ = _layer_outputs(model, decode)
    torch.testing.assert_close(again[-1], plain[-1])


def test_zero_loss_weights_skip_style_removal_and_response_encoding():
    config = GRAGConfig(method="postgrag", backbone="tiny:llama", alpha=0.0, beta=0.0)
    model, tok = build_model(config)
    batch = batch_of(model, tok, config)
    calls = {"se_g": 0, "rows": 0, "decoded_rows": 0}
    model.se_g.register_forward_hook(lambda *a: calls.__setitem__("se_g", calls["se_g"] + 1))
    embed = model.backbone.get_input_embeddings()
    embed.register_forward_hook(lambda m, a, o: calls.__setitem__("rows", calls["rows"] + a[0].size(0)))
    out = model(batch)
    assert "l_g" not in out and "l_cjepa" not in out
    assert calls["se_g"] == 0
    # P, H, R_G encoded (3 x 2 rows) and one decode of R_P (2 rows); R_P is never encoded
    assert calls["rows"] == 3 * 2 + 2
    calls.update(se_g=0, rows=0)
    model(batch, alpha=0.5, beta=0.1)
    assert calls["se_g"] == 1 and calls["rows"] == 4 * 2 + 2 * 2  # + R_P encoded, + R_G reconstructed


# -- C-JEPA -------------------------------------------------------------------------------------
def test_cjepa_loss_rewards_a_context_near_the_personalised_response():
    c = torch.tensor([[1.0, 0.0]])
    assert cjepa_loss(c, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(-1.0)
    assert cjepa_loss(c, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(1.0)
    assert cjepa_loss(c, torch.tensor([[0.6, 0.8]]), torch.tensor([[0.6, 0.8]])).item() == pytest.approx(0.0)
    hidden = torch.arange(12.0).view(2, 3, 2)
    assert last_token(hidden, torch.tensor([[1, 1, 0], [1, 1, 1]])).tolist() == [[2.0, 3.0], [10.0, 11.0]]


@pytest.mark.parametrize("method,backbone", [("pregrag", "tiny:llama"), ("postgrag", "tiny:bart")])
def test_a_few_steps_on_cjepa_alone_raise_the_margin_towards_the_personalised_response(method, backbone):
    config = GRAGConfig(method=method, backbone=backbone, alpha=0.0, beta=1.0)
    model, tok = build_model(config)
    model.eval()  # no dropout: measure the loss's own effect
    batch = batch_of(model, tok, config)

    def margin() -> float:
        with torch.no_grad():
            # the loss is cos(E_C, E_G) - cos(E_C, E_P), so the margin is its negative
            return -float(model(batch)["l_cjepa"])

    before = margin()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(5):
        optimizer.zero_grad()
        model(batch)["l_cjepa"].backward()
        optimizer.step()
    after = margin()
    assert after > before + 0.05, (before, after)


# -- training -----------------------------------------------------------------------------------
def test_learning_rate_decays_linearly_to_half_by_the_last_step():
    assert get_lr(0, 11, 1e-4) == pytest.approx(1e-4)
    assert get_lr(5, 11, 1e-4) == pytest.approx(0.75e-4)
    assert get_lr(10, 11, 1e-4) == pytest.approx(0.5e-4)
    assert get_lr(0, 1, 1e-3) == 1e-3


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Killed(Exception):
    """Stands in for the process dying: not Cancelled, so no checkpoint is written on the way out."""


def test_seeded_cpu_runs_repeat_and_a_killed_run_resumes_to_the_same_result(tmp_path):
    config = GRAGConfig(method="postgrag", backbone="tiny:bart", epochs=2, batch_size=2, grad_accum=2, lr=1e-3,
                        alpha=0.5, beta=0.1, checkpoint_every=2, seed=3)
    data = [RUN, COOK] * 4  # 8 samples: 4 micro-batches, 2 optimiser steps per epoch
    logs = []
    first = train(config, data, [COOK], tmp_path / "a", log=logs.append)
    assert first["steps"] == 4
    losses = [json.loads(line) for line in logs if '"lr"' in line]
    assert [e["step"] for e in losses] == [1, 2, 3, 4]
    assert all({"loss", "l_p", "l_g", "l_cjepa"} <= set(e) for e in losses)  # components logged
    assert losses[-1]["lr"] == pytest.approx(0.5e-3)  # the schedule ends at 50%
    assert sum('"validation": true' in line for line in logs) == 2  # once per epoch
    a, _ = load_model(tmp_path / "a" / "best")

    second = train(config, data, [COOK], tmp_path / "b")
    b, _ = load_model(tmp_path / "b" / "best")
    for k, v in _weights(a).items():
        torch.testing.assert_close(v, _weights(b)[k], rtol=0, atol=0)
    assert second["best_valid_l_p"] == first["best_valid_l_p"]

    def die_at_step_3(done, total):
        if done == 3:
            raise Killed()

    with pytest.raises(Killed):
        train(config, data, [COOK], tmp_path / "c", progress=die_at_step_3)
    resumed = train(config, data, [COOK], tmp_path / "c")
    assert resumed["resumed"] is True and resumed["steps"] == 4
    c, _ = load_model(tmp_path / "c" / "best")
    for k, v in _weights(a).items():
        torch.testing.assert_close(v, _weights(c)[k], rtol=1e-6, atol=1e-7)

    other = train(config.replace(seed=4), data, [COOK], tmp_path / "d")
    assert other["best_valid_l_p"] != first["best_valid_l_p"]


CANCEL_CONFIG = GRAGConfig(method="presft_hist", backbone="tiny:llama", epochs=3, batch_size=2, checkpoint_every=0)


def _train_cancelled_at_step_2(output_dir) -> None:
    """Train CANCEL_CONFIG on 4 samples and cancel it after its second optimiser step."""
    from modeling.progress import Cancelled

    def cancel(done, total):
        if done == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        train(CANCEL_CONFIG, [RUN, COOK] * 2, [], output_dir, progress=cancel)


@pytest.mark.parametrize("left", ["last.tmp", "last.old"])
def test_a_kill_in_the_middle_of_a_checkpoint_swap_still_resumes(tmp_path, left):
    """A worker killed between the renames of save_checkpoint leaves last.tmp or last.old, never nothing."""
    _train_cancelled_at_step_2(tmp_path)
    (tmp_path / "last").rename(tmp_path / left)  # the state a kill between the two renames leaves
    summary = train(CANCEL_CONFIG, [RUN, COOK] * 2, [], tmp_path)
    assert summary["resumed"] is True and summary["steps"] == 6


def test_cancel_saves_a_checkpoint_and_stops(tmp_path):
    _train_cancelled_at_step_2(tmp_path)
    state = json.loads((tmp_path / "last" / "state.json").read_text())
    assert state["step"] == 2


# -- generation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["presft_hist", "postgrag"])
def test_a_model_trained_on_one_sample_generates_its_reference(tmp_path, method):
    config = GRAGConfig(method=method, backbone="tiny:llama", epochs=60, batch_size=1, lr=3e-3, alpha=0.1,
                        beta=0.0, checkpoint_every=0, max_new_tokens=16, style_zero_init=False)
    train(config, [COOK], [], tmp_path)
    model, tok = load_model(tmp_path / "best")
    for decoding in ("greedy", "beam"):
        assert generate_responses(model, tok, [COOK], decoding=decoding) == [COOK.reference]
    sampled = generate_responses(model, tok, [COOK, RUN], decoding="sample", seed=1)
    assert len(sampled) == 2 and all(isinstance(t, str) and t for t in sampled)
    scores = score_reference(model, tok, [COOK])
    assert scores[0]["n_chars"] == len(COOK.reference)
    assert 0 <= scores[0]["bpc"] < 1.0  # memorised (an untrained model scores ~3.5 bits per character)


def test_reference_scores_match_a_direct_computation():
    config = GRAGConfig(method="presft_hist", backbone="tiny:bart")
    model, tok = build_model(config)
    model.eval()
    scores = score_reference(model, tok, SAMPLES)
    builder = InputBuilder(tok, config, is_encoder_decoder=True)
    for sample, score in zip(SAMPLES, scores):
        f = builder.features(sample)
        with torch.no_grad():
            logits = model.backbone(input_ids=torch.tensor([f.context]), labels=torch.tensor([f.target])).logits[0]
        logp = torch.log_softmax(logits, -1)
        nll = -sum(float(logp[j, f.target[j]]) for j in range(len(f.target) - 1))  # eos excluded
        assert score["nll_nats"] == pytest.approx(nll, rel=1e-4)
        assert score["bpc"] == pytest.approx(nll / math.log(2) / len(sample.reference), rel=1e-4)


# -- configuration and errors -------------------------------------------------------------------
def test_a_missing_backbone_fails_at_once_with_how_to_provide_it():
    with pytest.raises(ModelNotFound, match="facebook/bart-nonexistent.*not on this machine"):
        build_model(GRAGConfig(method="postgrag", backbone="facebook/bart-nonexistent"))
    with pytest.raises(ValueError, match="Unknown method 'grag'"):
        GRAGConfig(method="grag")
    # QLoRA is 4-bit bitsandbytes: refused on CPU before any weight is read.
    with pytest.raises(ValueError, match="qlora needs a CUDA device"):
        build_model(GRAGConfig(method="postgrag", backbone="facebook/bart-nonexistent", qlora=True, device="cpu"))


def test_sweep_covers_the_papers_grid_or_a_subset():
    full = sweep_configs(GRAGConfig(method="postgrag"))
    assert len(full) == 11 * 10 * 3
    assert {c.lr for c in full} == {1e-3, 1e-4, 1e-5} and {c.alpha for c in full} == {round(i / 10, 1) for i in range(11)}
    pre = sweep_configs(GRAGConfig(method="pregrag"), betas=[0, 0.05], lrs=[1e-4])
    assert [(c.beta, c.lr) for c in pre] == [(0, 1e-4), (0.05, 1e-4)]  # alpha collapses for PreGRAG
    assert len(sweep_configs(GRAGConfig(method="presft_hist"))) == 3


def test_cli_trains_and_generates_on_jsonl_and_reports_bad_lines(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(s.__dict__) for s in SAMPLES) + "\n")
    run = lambda *args: subprocess.run([sys.executable, "-m", "modeling.grag", *args], capture_output=True, text=True, timeout=600)  # noqa: E731
    trained = run("train", "--train", str(data), "--out", str(tmp_path / "run"), "--method", "pregrag",
                  "--backbone", "tiny:llama", "--epochs", "1", "--batch-size", "2", "--checkpoint-every", "0")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 1 and summary["method"] == "pregrag"
    out = tmp_path / "out.jsonl"
    generated = run("generate", "--model", str(tmp_path / "run" / "best"), "--input", str(data), "--output", str(out), "--score")
    assert generated.returncode == 0, generated.stderr
    result = json.loads(generated.stdout.strip().splitlines()[-1])
    assert result["samples"] == 2 and result["bpc"] > 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["key"] for r in rows] == [s.key for s in SAMPLES] and all("bpc" in r["score"] for r in rows)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(RUN.__dict__) + "\n" + json.dumps({**RUN.__dict__, "generic_response": ""}) + "\n")
    failed = run("train", "--train", str(bad), "--out", str(tmp_path / "bad"), "--method", "pregrag", "--backbone", "tiny:llama")
    assert failed.returncode == 2
    assert f"{bad}:2: 'generic_response' (R_G) is missing" in failed.stderr
    assert not (tmp_path / "bad").exists()


def test_training_only_the_top_layers_leaves_the_rest_unchanged(tmp_path):
    config = GRAGConfig(method="postgrag", backbone="tiny:llama", epochs=1, batch_size=2, lr=1e-2, checkpoint_every=0,
                        train_top_layers=1)
    model, tok = build_model(config)
    before = _weights(model)
    train(config, [RUN, COOK], [], tmp_path, model=model, tokenizer=tok)
    after = _weights(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("backbone.model.layers.1.") for k in changed)
    assert not any(k.startswith(("backbone.model.layers.0.", "backbone.model.embed_tokens")) for k in changed)
    assert any(k.startswith("se_p.") for k in changed)
