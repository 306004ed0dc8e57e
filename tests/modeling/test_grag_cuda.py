"""The CUDA paths of GRAG training: QLoRA (4-bit NF4 base + LoRA, peft + bitsandbytes) and bf16 autocast.

They need an NVIDIA GPU and are skipped without one (CI and the development machine have none);
run them on a GPU host with ``pytest -m cuda``. ``benchmarks/train_throughput.py --backbone
bart-base-arch`` times the bf16 path with the BART-base shape there.
"""
import math

import pytest

torch = pytest.importorskip("torch")

from modeling.grag.config import GRAGConfig  # noqa: E402
from modeling.grag.generate import generate_responses, score_reference  # noqa: E402
from modeling.grag.model import build_model, load_model  # noqa: E402
from modeling.grag.train import train  # noqa: E402
from tests.modeling.test_grag_core import COOK, RUN  # noqa: E402  (the same two dialogues as the CPU tests)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (QLoRA and bf16 training)"),
]


def test_qlora_postgrag_trains_only_the_adapters_and_reloads_to_the_same_model(tmp_path):
    import bitsandbytes as bnb

    config = GRAGConfig(method="postgrag", backbone="smollm2", qlora=True, device="cuda", epochs=1, batch_size=2,
                        lr=1e-3, alpha=0.5, beta=0.05, checkpoint_every=0, max_new_tokens=12, style_zero_init=False)
    model, tok = build_model(config)
    quantized = [m for m in model.backbone.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized, "no 4-bit linear layers: the BitsAndBytesConfig was not applied"
    assert quantized[0].weight.quant_state.quant_type == "nf4"
    assert quantized[0].compute_dtype == torch.bfloat16
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable)
    # Only LoRA, the tag-token embeddings and GRAG's own layers (style extractors) learn.
    frozen_base = [n for n in trainable if n.startswith("backbone.") and "lora_" not in n and "trainable_tokens" not in n]
    assert not frozen_base, frozen_base[:5]
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}

    summary = train(config, [RUN, COOK] * 4, [COOK], tmp_path, model=model, tokenizer=tok)
    assert summary["steps"] == 4
    assert all(math.isfinite(summary["last_train"][k]) for k in ("loss", "l_p", "l_g", "l_cjepa"))
    assert any(not torch.equal(p.detach(), lora_b[n]) for n, p in model.named_parameters() if n in lora_b)

    # The saved folder holds the adapters; load_model puts them back on a fresh 4-bit base.
    loaded, loaded_tok = load_model(tmp_path / "best")
    model.eval()
    trained_nll = score_reference(model, tok, [RUN, COOK])
    reloaded_nll = score_reference(loaded, loaded_tok, [RUN, COOK])
    for a, b in zip(trained_nll, reloaded_nll):
        assert b["nll_nats"] == pytest.approx(a["nll_nats"], rel=2e-2)
    texts = generate_responses(loaded, loaded_tok, [RUN, COOK])
    assert len(texts) == 2 and all(text.strip() for text in texts)


@pytest.mark.parametrize("backbone", ["tiny:bart", "tiny:llama"])
def test_bf16_autocast_training_on_cuda_learns_one_sample(tmp_path, backbone):
    config = GRAGConfig(method="postgrag", backbone=backbone, device="cuda", epochs=60, batch_size=1, lr=3e-3,
                        alpha=0.1, beta=0.01, checkpoint_every=0, max_new_tokens=16, style_zero_init=False)
    summary = train(config, [COOK], [], tmp_path)
    assert math.isfinite(summary["last_train"]["loss"])
    model, tok = load_model(tmp_path / "best", device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    assert generate_responses(model, tok, [COOK], decoding="greedy") == [COOK.reference]
    assert score_reference(model, tok, [COOK])[0]["bpc"] < 1.0  # memorised (untrained: about 3.5)
