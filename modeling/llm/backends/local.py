"""``TransformersBackend``: a local model through transformers, batched, with prefix and in-place caches."""
from __future__ import annotations

import os
from collections.abc import Sequence

from common.threads import torch_threads_apply

from ..loading import SMOLLM2, load_causal_lm, load_tokenizer
from .base import (
    MIN_SHARED_PREFIX,
    Backend,
    BatchCallback,
    Completion,
    GenerationSettings,
    LLMBackendError,
    Messages,
    stop_token_ids,
    stopped_at_limit,
)
from .kv_cache import common_prefix_length, left_pad, reserved_cache


class TransformersBackend(Backend):
    """A local causal LM, loaded once per process by ``loading.load_causal_lm``."""

    def __init__(self, model_id: str = SMOLLM2, *, device: str | None = None, quantization: str = "auto",
                 cpu_threads: int | None = None, prefix_cache: bool = True, prefill_rows: int | None = None):

        self.model_id = model_id
        self.prefix_cache = prefix_cache
        self.quantization = quantization
        self.model = load_causal_lm(model_id, device=device, quantization=quantization)
        self.tokenizer = load_tokenizer(model_id)
        self.device = next(self.model.parameters()).device
        # How many prompts of a batch share one prompt pass. On CPU a pass over a whole batch of
        # 16 spends about a fifth of its work on pads and on activations too large for the cache;
        # passes of 8 (or 4: the same within noise) similar-length prompts, whose caches are then
        # decoded together, took the prompt pass of llm_throughput's 64 prompts from 43 s to 36 s.
        # 8 leaves batches of 8 whole. A GPU wants one wide pass.
        # LLM_PREFILL_ROWS overrides it (0: one pass per batch).
        if prefill_rows is None:
            configured = os.environ.get("LLM_PREFILL_ROWS", "")
            prefill_rows = int(configured) if configured.strip() else (8 if self.device.type == "cpu" else 0)
        self.prefill_rows = prefill_rows
        # On a CPU shared with other busy processes, torch's OpenMP threads spin-wait on each
        # other and a forward pass gets >10x slower; LLM_CPU_THREADS=1 avoids that.
        if self.device.type == "cpu":
            torch_threads_apply(cpu_threads or None)

    def model_and_tokenizer(self):
        """The loaded model and tokenizer, for callers that run their own forward passes."""
        return self.model, self.tokenizer

    def score_options(self, groups, options, *, prefix_cache: bool = True, max_batch: int = 8):
        """In-process option scoring: one forward pass per prompt, each group's shared prefix encoded once.

        See ``Backend.score_options``; the engine is ``scoring.score_token_groups``. Prompts are
        cut at the answer position (``scoring.encode_messages``) with the first option's first spelling.
        """
        from ..scoring import encode_messages, first_answer, score_token_groups  # lazy: scoring imports kv_cache

        answer = first_answer(options)
        encoded = [[encode_messages(self.tokenizer, m, answer=answer) for m in group] for group in groups]
        return score_token_groups(self.model, self.tokenizer, encoded, options, prefix_cache=prefix_cache,
                                  max_batch=max_batch)

    def describe(self) -> dict:
        return {**super().describe(), "device": str(self.device), "dtype": str(self.model.dtype).removeprefix("torch."),
                "quantization": self.quantization}

    def encode(self, messages: Messages) -> list[int]:
        """Token ids of a chat prompt, rendered by the tokenizer's own chat template."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise LLMBackendError(
                f"Model {self.model_id!r} has no chat template in its tokenizer: it is not an instruct/chat "
                "model. Use an instruct model (e.g. meta-llama/Llama-3.1-8B-Instruct) or smollm2."
            )
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])

    def generate(
        self, prompts: Sequence[Messages], *, settings: GenerationSettings = GenerationSettings(),
        batch_size: int = 8, on_batch: BatchCallback | None = None,
    ) -> list[str]:
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        encoded = [self.encode(m) for m in prompts]
        if not encoded:
            return []
        prefix, prefix_cache = self.shared_prefix(encoded)
        # Longest first: similar lengths share a batch (little padding), and a too-long batch
        # fails at the start rather than after an hour.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        outputs: list[str] = [""] * len(encoded)
        kwargs = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                  "pad_token_id": self.tokenizer.pad_token_id, "repetition_penalty": settings.repetition_penalty}
        if settings.do_sample:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k or None)
        else:  # silence the model's own sampling defaults (SmolLM2 ships temperature/top_p)
            kwargs.update(temperature=None, top_p=None, top_k=None)
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            input_ids, attention, cache = self.prompt_pass(
                [encoded[i] for i in indices], prefix=prefix, prefix_cache=prefix_cache,
                room=settings.max_new_tokens,
            )
            torch.manual_seed(settings.seed)
            with torch.inference_mode():
                generated = self.model.generate(input_ids=input_ids, attention_mask=attention, cache=cache, **kwargs)
            new_tokens = generated[:, input_ids.shape[1]:].cpu()
            at_limit = stopped_at_limit(new_tokens, stop_ids=stop_token_ids(self.model, self.tokenizer),
                                        max_new_tokens=settings.max_new_tokens)
            texts = [Completion(text, hit_limit=hit) for text, hit in
                     zip(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True), at_limit)]
            for i, text in zip(indices, texts):
                outputs[i] = text
            if on_batch is not None:
                on_batch(indices, texts)
        return outputs

    def shared_prefix(self, encoded: Sequence[Sequence[int]]):
        """(length, one-row key/value cache) of what all prompts of a call start with; (0, None) if little.

        The prompts of one call share their system prompt (and ICL demonstrations): that prefix
        is encoded once and every batch starts from a copy of its cache. On CPU the prompt pass,
        not decoding, dominates the cost of a short reply.
        """
        import torch

        prefix = common_prefix_length(encoded) if self.prefix_cache else 0
        prefix = min(prefix, min(len(ids) for ids in encoded) - 1)  # every prompt keeps a token to encode
        if prefix < MIN_SHARED_PREFIX:
            return 0, None
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([list(encoded[0][:prefix])], device=self.device), use_cache=True)
        return prefix, (out.cache if "cache" in out else out.past_key_values)

    def prompt_pass(self, rows: Sequence[Sequence[int]], *, prefix: int, prefix_cache, room: int):
        """Input ids, attention mask and key/value cache (with ``room`` free positions) for one batch.

        Pads go left of each prompt's own part (after the shared prefix), so every row ends at its
        last prompt token; positions come from the attention mask, so they skip the pads. Where
        ``prefill_rows`` splits the batch, the cache already holds all but the last column.
        """
        import torch

        suffixes = [list(ids[prefix:]) for ids in rows]
        suffix_ids, suffix_mask = left_pad(suffixes, self.tokenizer.pad_token_id)
        width = suffix_ids.shape[1]
        input_ids = torch.cat([torch.tensor(list(rows[0][:prefix]), dtype=torch.long).expand(len(rows), prefix),
                               suffix_ids], dim=1)
        attention = torch.cat([torch.ones((len(rows), prefix), dtype=torch.long), suffix_mask], dim=1)
        cache = reserved_cache(self.model.config, capacity=prefix + width + room, batch_size=len(rows),
                               prefix=prefix_cache)
        if 0 < self.prefill_rows < len(rows):
            self._prefill_in_parts(cache, suffixes, prefix=prefix, width=width, prefix_cache=prefix_cache)
        return input_ids.to(self.device), attention.to(self.device), cache

    def _prefill_in_parts(self, cache, suffixes: list[list[int]], *, prefix: int, width: int, prefix_cache) -> None:
        """Run the prompt pass of one batch ``prefill_rows`` prompts at a time, into ``cache``.

        Every row is right-aligned (pads left of its own part), so the last column holds every
        prompt's last token. The parts encode all but that column, each padded only to its own
        longest prompt, and their keys/values are written into the batch's cache at the columns
        the full batch would use; the pad columns in between are zero and masked. ``generate``
        then finds ``prefix + width - 1`` positions cached and starts from the last column.
        """
        import torch

        layers = cache.layers
        for start in range(0, len(suffixes), self.prefill_rows):
            part = suffixes[start:start + self.prefill_rows]
            # The last column is left to generate.
            input_ids, part_mask = left_pad([ids[:-1] for ids in part], self.tokenizer.pad_token_id)
            part_width = input_ids.shape[1]
            rows = slice(start, start + len(part))
            if part_width == 0:
                continue
            attention = torch.cat([torch.ones((len(part), prefix), dtype=torch.long), part_mask], dim=1)
            positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, prefix:]
            part_cache = reserved_cache(self.model.config, capacity=prefix + part_width, batch_size=len(part),
                                        prefix=prefix_cache)
            with torch.inference_mode():
                self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                           position_ids=positions.to(self.device), cache=part_cache, use_cache=True, logits_to_keep=1)
            column = prefix + width - 1 - part_width
            for layer, filled in zip(layers, part_cache.layers):
                layer.write(rows, column, filled.keys[:, :, prefix:], filled.values[:, :, prefix:])
        for layer in layers:
            layer.set_length(prefix + width - 1)


