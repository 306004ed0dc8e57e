"""The CUDA paths of the LLM layer: 4-bit NF4 (bf16 compute, no double quantisation) and bf16.

They need an NVIDIA GPU and are skipped without one (CI and the development machine have
none); run them on a GPU host with ``pytest -m cuda``; ``benchmarks/llm_throughput.py --model <id>`` times
the same paths with a paper model.
"""
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (4-bit NF4 and bf16 paths)"),
]

PROMPTS = [
    [{"role": "system", "content": "You are a friendly conversational agent. Answer in one short sentence."},
     {"role": "user", "content": text}]
    for text in ("Hi! How was your weekend?", "I just adopted a dog, any tips for the first week at home?",
                 "What do you like to cook when you have a free evening and friends coming over later?")
]


def test_4bit_nf4_loads_with_the_papers_settings_and_generates_in_batches():
    import bitsandbytes as bnb

    from modeling.llm.backends import GenerationSettings, TransformersBackend

    backend = TransformersBackend("smollm2", device="cuda", quantization="4bit")
    quantized = [m for m in backend.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized, "no 4-bit linear layers: the BitsAndBytesConfig was not applied"
    state = quantized[0].weight.quant_state
    assert state.quant_type == "nf4" and not state.nested  # NF4, no double quantisation
    assert quantized[0].compute_dtype == torch.bfloat16
    assert backend.device.type == "cuda" and backend.prefill_rows == 0  # one wide prompt pass on a GPU

    settings = GenerationSettings(max_new_tokens=16)
    batched = backend.generate(PROMPTS, settings=settings, batch_size=3)
    one_by_one = [backend.generate([p], settings=settings, batch_size=1)[0] for p in PROMPTS]
    assert all(text.strip() for text in batched)
    # bf16 sums in another order once rows are padded, so an odd token may differ; most must not.
    assert sum(a == b for a, b in zip(batched, one_by_one)) >= 2


def test_bf16_generates_in_batches():
    from modeling.llm.backends import GenerationSettings, TransformersBackend

    backend = TransformersBackend("smollm2", device="cuda", quantization="bf16")
    assert backend.model.dtype == torch.bfloat16
    texts = backend.generate(PROMPTS, settings=GenerationSettings(max_new_tokens=16), batch_size=3)
    assert len(texts) == 3 and all(text.strip() for text in texts)
