"""Tagged model inputs for each method (section 3, Figure 1) and their batching.

A dialogue sample is persona P (the user's and the agent's), history H (turns ending with a
user turn), generic response R_G and reference R_P. Inputs are tagged with ``<user_persona>``,
``<agent_persona>``, ``<user>`` and ``<agent>``. Pre-fusion methods read one sequence
([P;H] for PreSFT(Hist), [P;R_G] for PreSFT(TST), H' = [P;H;R_G] for PreGRAG, section 3.2);
PostGRAG encodes P, H and R_G (and R_P for its losses) separately (section 3.3).
Truncation keeps the persona and R_G and drops the oldest turns first, so the most recent
history always survives.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from .config import GRAGConfig

USER_PERSONA, AGENT_PERSONA, USER, AGENT = "<user_persona>", "<agent_persona>", "<user>", "<agent>"
TAG_TOKENS = [USER_PERSONA, AGENT_PERSONA, USER, AGENT]
IGNORE_INDEX = -100  # label positions that carry no loss (context, padding)


@dataclass
class DialogueSample:
    """One non-leading agent turn (modeling.models.Sample without Django)."""

    history: list[dict]
    reference: str = ""
    generic_response: str = ""
    agent_persona: str = ""
    user_persona: str = ""
    key: str = ""

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "") -> DialogueSample:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        history = data.get("history")
        if not isinstance(history, list) or not all(
            isinstance(t, dict) and t.get("role") in ("user", "agent") and isinstance(t.get("text"), str) for t in history
        ):
            raise ValueError(f"{where}: 'history' must be a list of {{'role': 'user'|'agent', 'text': str}}")
        return cls(
            history=[{"role": t["role"], "text": t["text"]} for t in history],
            reference=str(data.get("reference") or ""),
            generic_response=str(data.get("generic_response") or ""),
            agent_persona=str(data.get("agent_persona") or ""),
            user_persona=str(data.get("user_persona") or ""),
            key=str(data.get("key") or ""),
        )


def add_tag_tokens(tokenizer) -> int:
    """Add the four tags as special tokens (never split, never stripped); returns how many were new."""
    added = tokenizer.add_tokens([t for t in TAG_TOKENS if t not in tokenizer.get_vocab()], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return added


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a text (BART: <s> and </s>; T5: </s>; GPT-2: none)."""
    plain = _ids(tokenizer, "hello")
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain):])
    return [], []


def persona_text(sample: DialogueSample) -> str:
    return f"{USER_PERSONA} {sample.user_persona.strip()} {AGENT_PERSONA} {sample.agent_persona.strip()}"


def turn_text(turn: dict) -> str:
    return f"{USER if turn['role'] == 'user' else AGENT} {turn['text'].strip()}"


def response_text(text: str) -> str:
    # R_G and R_P are agent turns; tagging them so makes Encode(R_P) and Encode(R_G) comparable.
    return f"{AGENT} {text.strip()}"


def fit_history(turn_ids: list[list[int]], budget: int) -> list[int]:
    """The most recent turns that fit in ``budget`` tokens, oldest first.

    If even the last turn is too long, keep its tag and its last tokens (the end of the user's
    utterance is what the response answers).
    """
    kept: list[list[int]] = []
    used = 0
    for ids in reversed(turn_ids):
        if used + len(ids) > budget:
            if not kept and budget > 1:
                kept.append(ids[:1] + ids[len(ids) - (budget - 1):])
            break
        kept.append(ids)
        used += len(ids)
    return [i for ids in reversed(kept) for i in ids]


@dataclass
class Features:
    """Token ids of one sample, unpadded. Which fields are set depends on the method."""

    context: list[int] = field(default_factory=list)  # pre-fusion input ([P;H], [P;R_G] or H')
    persona: list[int] = field(default_factory=list)  # PostGRAG: P
    history: list[int] = field(default_factory=list)  # PostGRAG: H
    generic: list[int] = field(default_factory=list)  # Encode(R_G) input (PostGRAG, C-JEPA)
    personalised: list[int] = field(default_factory=list)  # Encode(R_P) input (PostGRAG, C-JEPA)
    target: list[int] = field(default_factory=list)  # R_P as decoder target, ends with eos
    generic_target: list[int] = field(default_factory=list)  # R_G as target of style removal
    n_chars: int = 0  # characters of the reference, for bits per character


class InputBuilder:
    """Turn DialogueSamples into Features and padded batches for one tokenizer and method."""

    def __init__(self, tokenizer, config: GRAGConfig, *, is_encoder_decoder: bool):
        self.tokenizer = tokenizer
        self.config = config
        self.is_encoder_decoder = is_encoder_decoder
        self.eos = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.agent = tokenizer.convert_tokens_to_ids(AGENT)
        if self.agent is None or self.agent == tokenizer.unk_token_id:
            raise ValueError("The tokenizer lacks the tag tokens: call add_tag_tokens(tokenizer) first.")
        self.prefix, self.suffix = special_affixes(tokenizer)

    # -- one sequence ----------------------------------------------------------------------
    def _wrap(self, ids: list[int]) -> list[int]:
        """Encoder input: the tokenizer's own specials (BART <s> x </s>, T5 x </s>), ending in eos."""
        if not self.is_encoder_decoder:
            return ids
        ids = self.prefix + ids + self.suffix
        return ids if ids and ids[-1] == self.eos else ids + [self.eos]

    def _target(self, text: str) -> list[int]:
        # Decoder-only targets follow the <agent> tag the decoder is fed first, so they start
        # with a space like any continuation; seq2seq targets are plain text.
        ids = _ids(self.tokenizer, text.strip() if self.is_encoder_decoder else " " + text.strip())
        return ids[: self.config.max_target_len - 1] + [self.eos]

    def features(self, sample: DialogueSample, *, with_targets: bool = True) -> Features:
        c = self.config
        persona = _ids(self.tokenizer, persona_text(sample))[: c.max_persona_len]
        turns = [_ids(self.tokenizer, turn_text(t)) for t in sample.history]
        generic = _ids(self.tokenizer, response_text(sample.generic_response))[: c.max_generic_len]
        f = Features(n_chars=len(sample.reference))
        if c.method == "postgrag":
            f.persona = self._wrap(persona)
            f.history = self._wrap(fit_history(turns, c.max_history_len))
            f.generic = self._wrap(generic)
        else:
            reserve = 2 if self.is_encoder_decoder else 0  # room for the tokenizer's specials
            fixed = persona + (generic if c.method in ("presft_tst", "pregrag") else [])
            budget = max(c.max_source_len - len(fixed) - reserve, 0)
            history = fit_history(turns, budget) if c.method != "presft_tst" else []
            if c.method == "presft_hist":
                f.context = self._wrap(persona + history)
            elif c.method == "presft_tst":
                f.context = self._wrap(persona + generic)
            else:  # pregrag: H' = [P; H; R_G]
                f.context = self._wrap(persona + history + generic)
            if c.method == "pregrag":
                f.generic = self._wrap(generic)
        if with_targets:
            f.target = self._target(sample.reference)
            if c.method in ("pregrag", "postgrag"):
                f.personalised = self._wrap(
                    _ids(self.tokenizer, response_text(sample.reference))[: c.max_target_len]
                )
            if c.method == "postgrag":
                f.generic_target = self._target(sample.generic_response)
        return f

    # -- batches ---------------------------------------------------------------------------
    def pad(self, rows: Iterable[list[int]], *, value: int | None = None, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists into (ids, attention mask)."""
        rows = [r if r else [self.pad_id] for r in rows]  # an empty segment still needs one position
        width = max(length or 0, max(len(r) for r in rows))
        fill = self.pad_id if value is None else value
        ids = torch.full((len(rows), width), fill, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids, mask

    def collate(self, feats: list[Features]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {"n_chars": torch.tensor([f.n_chars for f in feats])}
        for name in ("context", "persona", "history", "generic", "personalised", "target", "generic_target"):
            if any(getattr(f, name) for f in feats):
                ids, mask = self.pad([getattr(f, name) for f in feats])
                batch[f"{name}_ids"], batch[f"{name}_mask"] = ids, mask
        return batch

    def batches(self, samples: list[DialogueSample], batch_size: int, *, with_targets: bool = True):
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            yield self.collate([self.features(s, with_targets=with_targets) for s in chunk])
