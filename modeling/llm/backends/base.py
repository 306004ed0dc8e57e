"""The backend interface and what every backend shares: the completion type, errors, settings."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

Messages = list[dict]
# Below this many shared tokens a separate prefix pass costs more than it saves.
MIN_SHARED_PREFIX = 16
BatchCallback = Callable[[list[int], list[str]], None]  # (prompt indices, raw outputs) of one finished batch


class Completion(str):
    """A raw completion: the text itself (a str), plus whether generation stopped at max_new_tokens.

    ``hit_limit`` is True when the model was still writing when the token limit ended it, False
    when it stopped by itself (end-of-sequence), None when the backend cannot tell. Callers that
    only need the text use it as a str; the generation services record ``hit_limit`` among an
    output's degenerate-output flags (modeling.text.degenerate_flags).
    """

    hit_limit: bool | None

    def __new__(cls, text: str, *, hit_limit: bool | None = None):
        obj = super().__new__(cls, text)
        obj.hit_limit = hit_limit
        return obj

    def __reduce__(self):
        return (_completion, (str(self), self.hit_limit))


def _completion(text: str, hit_limit: bool | None) -> Completion:
    return Completion(text, hit_limit=hit_limit)


def stopped_at_limit(rows, *, stop_ids: set[int], max_new_tokens: int) -> list[bool]:
    """Per row of generated token ids (a 2-D tensor of new tokens only): did it hit max_new_tokens?

    A row that ended by itself holds an end-of-sequence token and then pads; a row still going
    when generation stopped has neither as its last token, and that only happens at the limit.
    """
    if rows.shape[1] < max_new_tokens:
        return [False] * rows.shape[0]
    return [int(row[-1]) not in stop_ids for row in rows]


def stop_token_ids(model, tokenizer) -> set[int]:
    """Token ids that end a generation or pad after its end: the model's eos ids, the tokenizer's eos and pad."""
    ids = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None),
                  tokenizer.eos_token_id, tokenizer.pad_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


class LLMBackendError(RuntimeError):
    """A backend could not produce a generation; the message says which server or model and why."""


class LLMRequestRefused(LLMBackendError):
    """A server refused one request as wrong (HTTP 4xx other than 429: too long, unknown model); not retried."""


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode. Greedy by default, as in the paper's augmentation and ICL runs."""

    max_new_tokens: int = 64  # generic responses and ICL replies are one utterance
    do_sample: bool = False  # greedy unless asked: reruns give the same text
    temperature: float = 1.0  # sampling only
    top_p: float = 1.0  # sampling only
    top_k: int = 0  # sampling only; 0 = off
    repetition_penalty: float = 1.0
    seed: int = 0  # seeds sampling (and anything random in generate)

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """A stable text for cache keys: a different setting is a different generation."""
        return json.dumps(self.as_dict(), sort_keys=True)


def generation_cache_key(*, messages: Messages, settings: GenerationSettings) -> str:
    """sha256 of the rendered prompt and the generation settings (the LLMCache key)."""
    payload = json.dumps({"messages": messages, "settings": settings.as_dict()}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Backend:
    model_id: str

    def generate(
        self, prompts: Sequence[Messages], *, settings: GenerationSettings = GenerationSettings(),
        batch_size: int = 8, on_batch: BatchCallback | None = None,
    ) -> list[str]:
        raise NotImplementedError

    def score_options(self, groups: Sequence[Sequence[Messages]], options, *, prefix_cache: bool = True,
                      max_batch: int = 8) -> list[list]:
        """Per chat prompt, the next-token probability each option got (``scoring.OptionMass``).

        ``groups``: lists of chat prompts (each a list of messages); prompts of one group share a
        long prefix (the judge: one item), which a backend may encode once. ``options``: option ->
        the texts that spell it (``{"A": ("A", "a", " A", " a"), ...}``). Returns, in the shape of
        ``groups``, one ``OptionMass`` per prompt (per-option masses before renormalising, or an
        error for a prompt that could not be scored). See ``modeling.llm.scoring``.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot score options")

    def usage(self) -> dict[str, int]:
        """Token usage reported by a server so far (empty in-process)."""
        return {}

    def describe(self) -> dict:
        return {"model_id": self.model_id, "backend": type(self).__name__}


