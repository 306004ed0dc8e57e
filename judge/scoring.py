"""Verdicts from next-token probabilities, with no free-text parsing (plain Python + torch).

For each judge prompt (chat template with the generation prompt) one forward pass gives the
next-token distribution; the probabilities of the option tokens (A / B / S, each with its
tokenizer variants such as "A" and " A") are summed per option and renormalised over the three
options. The choice is the most probable option, the confidence (1-5) comes from its
probability by ``CONFIDENCE_THRESHOLDS``. Nothing is generated, so nothing can be unparseable.

Speed: the prompts of one item (four questions x two orders) share their start (instructions,
persona, history, generic response; see ``judge.prompts``), and the four prompts of one order
also share both responses. The shared prefix is encoded once, then each order's responses once
on a copy of its key/value cache, which is then repeated along the batch so that only the
questions are run, batched and right-padded. Backends whose cache cannot be reused fall back to batched full
prompts sorted by length with left padding (``prefix_cache=False``); both give the same numbers.

Position bias (section 5.5 of the paper reports the judge is more decisive than humans): every
(item, question) is judged in both orders; ``pair_verdict`` keeps consistent verdicts and turns
one that changes with the order into "similar", flagged as flipped.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modeling.llm.backends import common_prefix_length, left_pad

from .prompts import OPTIONS

# The surface forms of each option that count as that option's next token. A chat model may
# start its answer with or without a space depending on its tokenizer; lowercase letters are
# left out because "a" is also the English article.
OPTION_VARIANTS: dict[str, tuple[str, ...]] = {"A": ("A", " A"), "B": ("B", " B"), "S": ("S", " S")}

# Confidence 1-5 from the renormalised probability of the chosen option (with three options it
# is at least 1/3): below 0.45 -> 1, below 0.6 -> 2, below 0.75 -> 3, below 0.9 -> 4, else 5.
# The same five-point scale the annotators use (section 5.5), so reports can filter both alike.
CONFIDENCE_THRESHOLDS = (0.45, 0.6, 0.75, 0.9)

CANONICAL = ("baseline", "challenger", "similar")


def confidence_from_probability(p: float) -> int:
    """Map the chosen option's probability to the 1-5 confidence scale (see CONFIDENCE_THRESHOLDS)."""
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ValueError(f"probability must be in [0, 1], got {p!r}")
    return 1 + sum(p >= t for t in CONFIDENCE_THRESHOLDS)


def canonical_choice(letter: str, *, baseline_side: str) -> str:
    """The answer as the judge gave it (A / B / S) in terms of the systems (baseline / challenger / similar)."""
    if letter == "S":
        return "similar"
    if letter not in ("A", "B") or baseline_side not in ("A", "B"):
        raise ValueError(f"unknown answer {letter!r} or baseline side {baseline_side!r}")
    return "baseline" if letter == baseline_side else "challenger"


def canonical_probabilities(shown: Mapping[str, float], *, baseline_side: str) -> dict[str, float]:
    """{"A", "B", "S"} probabilities of one order -> {"baseline", "challenger", "similar"}."""
    challenger_side = "B" if baseline_side == "A" else "A"
    return {"baseline": shown[baseline_side], "challenger": shown[challenger_side], "similar": shown["S"]}


@dataclass(frozen=True)
class Score:
    """The judge's answer to one prompt: renormalised option probabilities, or an error."""

    probabilities: dict[str, float] | None  # {"A": p, "B": p, "S": p}, summing to 1
    option_mass: float = 0.0  # probability the model gave the option tokens before renormalising
    n_tokens: int = 0
    cached_prefix_tokens: int = 0
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.probabilities is None

    @property
    def choice(self) -> str | None:
        if self.probabilities is None:
            return None
        return max(OPTIONS, key=lambda o: self.probabilities[o])

    @property
    def confidence(self) -> int | None:
        return None if self.probabilities is None else confidence_from_probability(self.probabilities[self.choice])


@dataclass(frozen=True)
class PairVerdict:
    """The position-debiased verdict of one (item, question) from its two orders."""

    choice: str  # baseline / challenger / similar
    confidence: int
    probabilities: dict[str, float]  # canonical, averaged over both orders
    flipped: bool  # the two orders disagreed, so the verdict became "similar"
    orders: dict[str, str] = field(default_factory=dict)  # baseline_side -> canonical choice in that order


def pair_verdict(
    *, baseline_as_a: Mapping[str, float], baseline_as_b: Mapping[str, float], flipped_confidence: int
) -> PairVerdict:
    """Combine both orders: a consistent choice stands, a choice that changes with the order becomes
    "similar" (flagged) with ``flipped_confidence``.

    A flipped verdict is the judge telling us its preference is an artefact of position, which is
    what a "Similar" vote means; the caller picks the confidence so that it still counts as a vote.
    """
    first = canonical_probabilities(baseline_as_a, baseline_side="A")
    second = canonical_probabilities(baseline_as_b, baseline_side="B")
    mean = {c: (first[c] + second[c]) / 2 for c in CANONICAL}
    choice_first = max(CANONICAL, key=first.__getitem__)
    choice_second = max(CANONICAL, key=second.__getitem__)
    orders = {"A": choice_first, "B": choice_second}
    if choice_first == choice_second:
        # Both orders' argmax is the same option, so it is also the argmax of the mean.
        return PairVerdict(choice_first, confidence_from_probability(mean[choice_first]), mean, False, orders)
    return PairVerdict("similar", flipped_confidence, mean, True, orders)


def option_token_ids(tokenizer) -> dict[str, list[int]]:
    """The token ids of each option's single-token variants; raise if an option has none."""
    ids: dict[str, list[int]] = {}
    seen: dict[int, str] = {}
    for option in OPTIONS:
        found = []
        for variant in OPTION_VARIANTS[option]:
            encoded = tokenizer.encode(variant, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] not in found:
                if encoded[0] in seen:
                    raise ValueError(f"token {encoded[0]} encodes both {seen[encoded[0]]!r} and {option!r}")
                seen[encoded[0]] = option
                found.append(encoded[0])
        if not found:
            raise ValueError(f"the tokenizer has no single token for the judge option {option!r}")
        ids[option] = found
    return ids


def encode_messages(tokenizer, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of a chat prompt ending with the assistant's generation prompt."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    # The chat template already holds any special tokens the model needs (BOS, <|im_start|>).
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def context_length(model) -> int | None:
    """The longest sequence the model accepts, when its config says."""
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _scores_from_logits(logits, option_ids: Mapping[str, list[int]], lengths, prefix: int) -> list[Score]:
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    result = []
    for row, n_tokens in zip(probs, lengths):
        mass = {o: float(row[ids].sum()) for o, ids in option_ids.items()}
        total = sum(mass.values())
        if not math.isfinite(total) or total <= 0.0:
            result.append(Score(None, total if math.isfinite(total) else 0.0, n_tokens, prefix,
                                error=f"the option tokens got no usable probability (sum {total!r})"))
            continue
        result.append(Score({o: m / total for o, m in mass.items()}, total, n_tokens, prefix))
    return result


# Prompts whose shared prefix extends this many tokens beyond the item's common prefix get a
# second cached level (in practice: the four questions of one order share both responses).
MIN_SUBPREFIX_TOKENS = 8


def prefix_clusters(prompts: Sequence[Sequence[int]], *, beyond: int) -> list[list[int]]:
    """Indices of prompts grouped so that each group shares at least ``beyond + MIN_SUBPREFIX_TOKENS`` tokens.

    Sorting the token lists puts prompts with long common prefixes next to each other, so one pass
    over neighbours finds the groups.
    """
    order = sorted(range(len(prompts)), key=lambda i: list(prompts[i]))
    clusters = [[order[0]]]
    for previous, current in zip(order, order[1:]):
        shared = common_prefix_length([prompts[previous], prompts[current]])
        if shared >= beyond + MIN_SUBPREFIX_TOKENS:
            clusters[-1].append(current)
        else:
            clusters.append([current])
    return clusters


# Items of one run share the start of their prompts too (system prompt, chat header, the first
# panel's title: about 100 tokens): kept on the model between calls once two items agree on this many.
MIN_TEMPLATE_TOKENS = 16
_TEMPLATE_SLOT = "_judge_template_prefix"  # attribute on the model: (token ids, key/value cache)


def _item_prefix_cache(model, base, tokens: list[int]):
    """The key/value cache of an item's shared prefix, starting from the run's template prefix.

    The first item's whole prefix is kept; the next item's cuts it down to what the two share,
    the template part, which later items then copy instead of recomputing.
    """
    import torch

    device = model.device
    slot = getattr(model, _TEMPLATE_SLOT, None)
    if slot is not None:
        kept_tokens, kept_cache = slot
        shared = min(common_prefix_length([kept_tokens, tokens]), len(tokens))
        if shared >= MIN_TEMPLATE_TOKENS:
            cache = copy.deepcopy(kept_cache)
            if shared < len(kept_tokens):
                cache.crop(shared - len(kept_tokens))  # a negative value drops that many tokens from the end
                setattr(model, _TEMPLATE_SLOT, (kept_tokens[:shared], copy.deepcopy(cache)))
            if shared < len(tokens):
                base(input_ids=torch.tensor([tokens[shared:]], device=device), cache=cache, use_cache=True)
            return cache
    cache = base(input_ids=torch.tensor([tokens], device=device), use_cache=True).cache
    setattr(model, _TEMPLATE_SLOT, (list(tokens), copy.deepcopy(cache)))
    return cache


def _score_with_prefix_cache(model, prompts: Sequence[Sequence[int]], option_ids, max_batch: int) -> list[Score]:
    """Encode the item's shared prefix once, then each order's shared part once on a copy of its
    key/value cache, then run the remaining suffixes batched on copies of that cache."""
    import torch

    device = model.device
    base = model.base_model  # the transformer without the LM head: hidden states only
    head = model.get_output_embeddings()
    # Keep at least one token per suffix: its hidden state gives the next-token distribution.
    prefix = min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
    root_cache = _item_prefix_cache(model, base, list(prompts[0][:prefix]))
    pad = 0
    scores: dict[int, Score] = {}
    clusters = prefix_clusters(prompts, beyond=prefix)
    for c, cluster in enumerate(clusters):
        members = [prompts[i] for i in cluster]
        sub = min(common_prefix_length(members), min(len(p) for p in members) - 1) if len(members) > 1 else prefix
        cluster_cache = copy.deepcopy(root_cache) if c < len(clusters) - 1 else root_cache
        if sub > prefix:
            base(input_ids=torch.tensor([list(members[0][prefix:sub])], device=device), cache=cluster_cache, use_cache=True)
        for start in range(0, len(cluster), max_batch):
            idx = cluster[start:start + max_batch]
            suffixes = [list(prompts[i][sub:]) for i in idx]
            width = max(len(x) for x in suffixes)
            # Right padding: pads come after every real token, so causal attention never lets a real
            # token see them and positions continue from the cached prefix unchanged.
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in suffixes], device=device)
            suffix_mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in suffixes], device=device)
            mask = torch.cat([torch.ones(len(idx), sub, dtype=suffix_mask.dtype, device=device), suffix_mask], 1)
            cache = copy.deepcopy(cluster_cache) if start + max_batch < len(cluster) else cluster_cache
            cache.batch_repeat_interleave(len(idx))
            hidden = base(input_ids=input_ids, attention_mask=mask, cache=cache, use_cache=True).last_hidden_state
            last = hidden[torch.arange(len(idx), device=device), torch.tensor([len(x) - 1 for x in suffixes], device=device)]
            for i, score in zip(idx, _scores_from_logits(head(last), option_ids, [len(prompts[i]) for i in idx], sub)):
                scores[i] = score
    return [scores[i] for i in range(len(prompts))]


def _score_full(model, prompts: Sequence[Sequence[int]], option_ids, max_batch: int, pad_id: int) -> list[Score]:
    """Whole prompts, batched by similar length with left padding, one forward pass each batch."""
    device = model.device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    scores: dict[int, Score] = {}
    for start in range(0, len(order), max_batch):
        idx = order[start:start + max_batch]
        input_ids, mask = (t.to(device) for t in left_pad([prompts[i] for i in idx], pad_id))
        # Positions count real tokens only, as in generate(), so padding does not shift them.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits[:, -1]
        for i, s in zip(idx, _scores_from_logits(logits, option_ids, [len(prompts[i]) for i in idx], 0)):
            scores[i] = s
    return [scores[i] for i in range(len(prompts))]


def score_prompt_groups(
    model,
    tokenizer,
    groups: Sequence[Sequence[Sequence[int]]],
    *,
    prefix_cache: bool = True,
    max_batch: int = 8,
) -> list[list[Score]]:
    """Score token-id prompts; each group (one item's prompts) shares a prefix encoded once.

    A prompt that cannot be scored (longer than the model's context, a backend error, no
    probability on the options) gets a Score with ``error`` set: a failure, never a vote.
    """
    import torch

    option_ids = option_token_ids(tokenizer)
    limit = context_length(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results: list[list[Score]] = []
    with torch.inference_mode():
        for group in groups:
            scores: list[Score | None] = [None] * len(group)
            runnable = []
            for i, prompt in enumerate(group):
                if limit is not None and len(prompt) > limit:
                    scores[i] = Score(None, n_tokens=len(prompt), error=(
                        f"the prompt has {len(prompt)} tokens, more than the model's context of {limit}"))
                elif not prompt:
                    scores[i] = Score(None, error="empty prompt")
                else:
                    runnable.append(i)
            if runnable:
                prompts = [group[i] for i in runnable]
                try:
                    if prefix_cache and len(prompts) > 1 and common_prefix_length(prompts) > 0:
                        got = _score_with_prefix_cache(model, prompts, option_ids, max_batch)
                    else:
                        got = _score_full(model, prompts, option_ids, max_batch, pad_id)
                except (RuntimeError, ValueError, IndexError) as exc:  # OOM, backend limits: record, go on
                    got = [Score(None, n_tokens=len(p), error=f"{type(exc).__name__}: {exc}"[:2000]) for p in prompts]
                for i, s in zip(runnable, got):
                    scores[i] = s
            results.append(scores)  # type: ignore[arg-type]
    return results
