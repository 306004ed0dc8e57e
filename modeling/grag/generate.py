"""Inference (section 3.5): P, H, R_G -> response, in batches; and the reference's NLL for BPC.

Style removal and C-JEPA are training-only, so generation runs only the encodings and the
(style-enhanced) decoder. Decoding is greedy, beam search or nucleus sampling.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from modeling.llm.backends import Completion, left_pad, stop_token_ids, stopped_at_limit
from modeling.progress import ProgressCallback, no_progress

from .config import GRAGConfig
from .inputs import DialogueSample, InputBuilder
from .model import GRAGModel


def generation_kwargs(config: GRAGConfig, tokenizer, *, decoding: str | None = None) -> dict:
    decoding = decoding or config.decoding
    kwargs = {
        "max_new_tokens": config.max_new_tokens, "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if decoding == "greedy":
        kwargs.update(do_sample=False, num_beams=1)
    elif decoding == "beam":
        kwargs.update(do_sample=False, num_beams=config.num_beams, early_stopping=True)
    elif decoding == "sample":
        kwargs.update(do_sample=True, top_p=config.top_p, temperature=config.temperature, num_beams=1)
    else:
        raise ValueError(f"Unknown decoding {decoding!r}; choose greedy, beam or sample.")
    return kwargs


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.no_grad()
def generate_batch(model: GRAGModel, builder: InputBuilder, samples: list[DialogueSample], **kwargs) -> list[str]:
    """Responses for one batch of samples, as Completions (str; ``hit_limit`` says if max_new_tokens ended one)."""
    from transformers.modeling_outputs import BaseModelOutput

    model.eval()
    device = next(model.parameters()).device
    feats = [builder.features(s, with_targets=False) for s in samples]
    backbone = model.backbone
    tokenizer = builder.tokenizer
    if model.config.method != "postgrag":
        if model.is_encoder_decoder:
            ids, mask = builder.pad([f.context for f in feats])
            out = backbone.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
            new = out
        else:
            ids, mask = (t.to(device) for t in left_pad([f.context + [model.agent_token_id] for f in feats], builder.pad_id))
            out = backbone.generate(input_ids=ids, attention_mask=mask, **kwargs)
            new = out[:, ids.size(1):]
    else:
        batch = {k: v.to(device) for k, v in builder.collate(feats).items()}
        enc = model.encode_segments({
            "persona": (batch["persona_ids"], batch["persona_mask"]),
            "history": (batch["history_ids"], batch["history_mask"]),
            "generic": (batch["generic_ids"], batch["generic_mask"]),
        })
        style = model.style_vectors(enc)
        if model.is_encoder_decoder:
            e_h, m_h, _ = enc["history"]
            with model.style.applied(style):
                new = backbone.generate(
                    encoder_outputs=BaseModelOutput(last_hidden_state=e_h), attention_mask=m_h, **kwargs
                )
        else:
            # The prompt H + <agent> is re-encoded by generate; only <agent> and what follows
            # get S_P, as in training where H's cache was unstyled.
            ids, mask = (t.to(device) for t in left_pad([f.history + [model.agent_token_id] for f in feats], builder.pad_id))
            with model.style.applied(style, last_position_on_prefill=True):
                out = backbone.generate(input_ids=ids, attention_mask=mask, **kwargs)
            new = out[:, ids.size(1):]
    # Encoder-decoder outputs start with the decoder start token: only the last column matters here.
    at_limit = stopped_at_limit(new, stop_ids=stop_token_ids(backbone, tokenizer),
                                max_new_tokens=kwargs.get("max_new_tokens", 0))
    return [Completion(t.strip(), hit_limit=hit)
            for t, hit in zip(tokenizer.batch_decode(new, skip_special_tokens=True), at_limit)]


def generate_responses(
    model: GRAGModel,
    tokenizer,
    samples: list[DialogueSample],
    *,
    decoding: str | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    progress: ProgressCallback = no_progress,
) -> list[str]:
    """Generate a response for every sample, in batches, reporting progress after each batch."""
    config = model.config
    builder = InputBuilder(tokenizer, config, is_encoder_decoder=model.is_encoder_decoder)
    kwargs = generation_kwargs(config, tokenizer, decoding=decoding)
    if seed is not None or kwargs.get("do_sample"):
        torch.manual_seed(config.seed if seed is None else seed)
    texts: list[str] = []
    for chunk in _chunks(samples, batch_size or config.generation_batch_size):
        texts.extend(generate_batch(model, builder, chunk, **kwargs))
        progress(len(texts), len(samples))
    return texts


@torch.no_grad()
def score_reference(
    model: GRAGModel, tokenizer, samples: list[DialogueSample], *, batch_size: int | None = None
) -> list[dict]:
    """The model's NLL of each reference R_P at inference conditioning (no L_G, no C-JEPA).

    Per sample: nll_nats (summed over the reference's tokens, final eos excluded), n_tokens,
    n_chars and bpc = nll_nats / ln 2 / n_chars (section 4.3.3's bits per character).
    """
    model.eval()
    device = next(model.parameters()).device
    builder = InputBuilder(tokenizer, model.config, is_encoder_decoder=model.is_encoder_decoder)
    results: list[dict] = []
    for chunk in _chunks(samples, batch_size or model.config.generation_batch_size):
        batch = {k: v.to(device) for k, v in builder.collate([builder.features(s) for s in chunk]).items()}
        out = model(batch, alpha=0.0, beta=0.0)
        for i, sample in enumerate(chunk):
            nll, n_chars = float(out["nll"][i]), len(sample.reference)
            results.append({
                "nll_nats": nll, "n_tokens": int(out["n_tokens"][i]), "n_chars": n_chars,
                "bpc": nll / math.log(2) / n_chars if n_chars else None,
            })
    return results
