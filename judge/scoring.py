"""Verdicts from next-token probabilities, with no free-text parsing (plain Python + torch).

For each judge prompt (chat template with the generation prompt) one forward pass gives the
next-token distribution at the answer position (``encode_messages``); the probabilities of the
option tokens (A / B / S, each with every token that spells it: case, a leading space, and the
token the chat template's own preamble merges with the letter; ``option_token_ids``) are summed
per option and renormalised over the three options. The choice is the most probable option, the
confidence (1-5) comes from its probability by ``CONFIDENCE_THRESHOLDS``. Nothing is generated,
so nothing can be unparseable. The summed probability before renormalising (the option mass)
decides whether the verdict is an abstention (``option_score``, rule in ``judge.reliability``).

Speed: the prompts of one item (four questions x two orders) share their start (instructions,
persona, history, generic response; see ``judge.prompts``), and the four prompts of one order
also share both responses. The shared prefix is encoded once, then each order's responses once
on a copy of its key/value cache, which is then repeated along the batch so that only the
questions are run, batched and right-padded. Backends whose cache cannot be reused fall back to batched full
prompts sorted by length with left padding (``prefix_cache=False``); both give the same numbers.

Position bias (section 5.5 of the paper reports the judge is more decisive than humans): every
(item, question) is judged in both orders; ``pair_verdict`` keeps consistent verdicts and turns
one that changes with the order into "similar", flagged as flipped, with the judge's own
confidence (the lower of its two orders').
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modeling.llm.backends import common_prefix_length, left_pad

from .prompts import OPTIONS
from .reliability import DEFAULT_MIN_OPTION_MASS, verdict_abstains

# The spellings of each option that count as that option's answer. A chat model may start its
# answer with or without a space and in either case, and every one of them is the model choosing
# that option: leaving one out moves its probability out of the option mass and can turn a real
# answer into an abstention. Lowercase "a" is also the English article, but at the answer
# position, right after an instruction to answer with a single letter, it is the answer.
OPTION_SPELLINGS: dict[str, tuple[str, ...]] = {
    option: (option, option.lower(), f" {option}", f" {option.lower()}") for option in OPTIONS
}
# A conversation rendered by the model's chat template to find the answer position's tokens.
_PROBE_MESSAGES = ({"role": "system", "content": "Answer with a single letter: A, B or S."},
                   {"role": "user", "content": "Which response is better?"})

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
    """The judge's answer to one prompt: renormalised option probabilities, or an error.

    An abstention (option mass below the run's minimum) keeps its probabilities and choice for
    audit; it is scored, not failed, and never becomes a vote.
    """

    probabilities: dict[str, float] | None  # {"A": p, "B": p, "S": p}, summing to 1
    option_mass: float = 0.0  # probability the model gave the option tokens before renormalising
    n_tokens: int = 0
    cached_prefix_tokens: int = 0
    error: str = ""
    abstained: bool = False  # option_mass below the run's min_option_mass (judge.reliability)

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


def option_score(
    option_mass: Mapping[str, float],
    *,
    min_option_mass: float = DEFAULT_MIN_OPTION_MASS,
    n_tokens: int = 0,
    cached_prefix_tokens: int = 0,
) -> Score:
    """The Score of one prompt from the probability each option's tokens got at the answer position.

    ``option_mass``: {"A": p, "B": p, "S": p}, each the summed next-token probability of that
    option's spellings, before any renormalising (so the three sum to at most 1). The in-process
    scorer calls this per prompt; a server backend (issue 19) calls it with the options'
    probabilities from its top log-probabilities. Renormalises over the options and marks the
    verdict an abstention by ``judge.reliability.verdict_abstains``. No usable probability
    (zero or not finite) is a failure: an error, retried when the run resumes.
    """
    if set(option_mass) != set(OPTIONS):
        raise ValueError(f"option_mass needs exactly the options {list(OPTIONS)}, got {sorted(option_mass)}")
    total = sum(float(m) for m in option_mass.values())
    if not math.isfinite(total) or total <= 0.0 or any(float(m) < 0 for m in option_mass.values()):
        return Score(None, total if math.isfinite(total) else 0.0, n_tokens, cached_prefix_tokens,
                     error=f"the option tokens got no usable probability (sum {total!r})")
    return Score({o: float(option_mass[o]) / total for o in OPTIONS}, total, n_tokens, cached_prefix_tokens,
                 abstained=verdict_abstains(option_mass=total, min_option_mass=min_option_mass))


@dataclass(frozen=True)
class PairVerdict:
    """The position-debiased verdict of one (item, question) from its two orders."""

    choice: str  # baseline / challenger / similar
    confidence: int
    probabilities: dict[str, float]  # canonical, averaged over both orders
    flipped: bool  # the two orders disagreed, so the verdict became "similar"
    orders: dict[str, str] = field(default_factory=dict)  # baseline_side -> canonical choice in that order
    order_confidences: dict[str, int] = field(default_factory=dict)  # baseline_side -> confidence in that order


def pair_verdict(*, baseline_as_a: Mapping[str, float], baseline_as_b: Mapping[str, float]) -> PairVerdict:
    """Combine both orders: a consistent choice stands, a choice that changes with the order becomes
    "similar" (flagged as flipped).

    A flipped verdict is the judge telling us its preference is an artefact of position, which is
    what a "Similar" vote means. Its confidence is what the judge said: the lower of the two
    orders' confidences (each from that order's chosen option), never a value picked from the
    study's settings; aggregation counts a flipped vote at every minimum confidence
    (``annotation.aggregation``), so changing the study's threshold later changes nothing for it.
    """
    first = canonical_probabilities(baseline_as_a, baseline_side="A")
    second = canonical_probabilities(baseline_as_b, baseline_side="B")
    mean = {c: (first[c] + second[c]) / 2 for c in CANONICAL}
    choice_first = max(CANONICAL, key=first.__getitem__)
    choice_second = max(CANONICAL, key=second.__getitem__)
    orders = {"A": choice_first, "B": choice_second}
    order_confidences = {"A": confidence_from_probability(first[choice_first]),
                         "B": confidence_from_probability(second[choice_second])}
    if choice_first == choice_second:
        # Both orders' argmax is the same option, so it is also the argmax of the mean.
        return PairVerdict(choice_first, confidence_from_probability(mean[choice_first]), mean, False, orders,
                           order_confidences)
    return PairVerdict("similar", min(order_confidences.values()), mean, True, orders, order_confidences)


def _single_token(tokenizer, text: str) -> int | None:
    encoded = tokenizer.encode(text, add_special_tokens=False)
    return encoded[0] if len(encoded) == 1 else None


def option_token_ids(tokenizer) -> dict[str, list[int]]:
    """The token ids that spell each option as the model's answer; raise if an option has none.

    Two sources, united: each spelling of ``OPTION_SPELLINGS`` encoded alone when it is one
    token, and the token each spelling becomes right after the chat template's generation
    prompt, found by rendering a probe conversation. The second catches the template's own
    preamble: one that ends in a space or newline the tokenizer merges with the letter (an
    "Assistant: " preamble answers with the token " A", a GPT-2 style tokenizer splits a
    trailing "\n\n" differently once a letter follows) gives the answer token only in context.
    """
    context_ids: dict[str, int] = {}
    try:
        probe = tokenizer.apply_chat_template(list(_PROBE_MESSAGES), tokenize=False, add_generation_prompt=True)
    except (ValueError, TypeError, AttributeError):  # no chat template: encode_messages will say so
        probe = None
    if probe is not None:
        context = answer_context_ids(tokenizer, probe)
        for option in OPTIONS:
            for spelling in OPTION_SPELLINGS[option]:
                ids = tokenizer(probe + spelling, add_special_tokens=False)["input_ids"]
                if len(ids) == len(context) + 1 and ids[:len(context)] == context:
                    context_ids.setdefault(spelling, ids[-1])
    ids: dict[str, list[int]] = {}
    seen: dict[int, str] = {}
    for option in OPTIONS:
        found = []
        for spelling in OPTION_SPELLINGS[option]:
            for token in (_single_token(tokenizer, spelling), context_ids.get(spelling)):
                if token is None or token in found:
                    continue
                if token in seen:
                    raise ValueError(f"token {token} encodes both {seen[token]!r} and {option!r}")
                seen[token] = option
                found.append(token)
        if not found:
            raise ValueError(f"the tokenizer has no single token for the judge option {option!r}")
        ids[option] = found
    return ids


def answer_context_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a prompt ``text`` (ending with the generation prompt) as they stand before the answer.

    Tokenizers split text differently when more follows: the answer's first token may swallow
    the preamble's trailing space, or trailing newlines may split otherwise. The model's next
    token is predicted from the tokens it would have seen with its answer written, so the prompt
    is cut where ``text`` followed by the answer letter puts the boundary.
    """
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    answered = tokenizer(text + OPTIONS[0], add_special_tokens=False)["input_ids"]
    if answered[:len(plain)] == plain:
        return plain  # the common case: the letter starts a token of its own after the prompt
    if len(answered) > 1 and tokenizer.decode(answered[-1:]).strip() == OPTIONS[0]:
        return answered[:-1]  # the letter's token took the preamble's end with it
    return plain  # the letter merged into a word: no clean answer position, keep the text's own split


def encode_messages(tokenizer, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of a chat prompt ending with the assistant's generation prompt, cut at the answer position."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    # The chat template already holds any special tokens the model needs (BOS, <|im_start|>).
    return answer_context_ids(tokenizer, text)


def context_length(model) -> int | None:
    """The longest sequence the model accepts, when its config says."""
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _scores_from_logits(logits, option_ids: Mapping[str, list[int]], lengths, prefix: int,
                        min_option_mass: float) -> list[Score]:
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    return [
        option_score({o: float(row[ids].sum()) for o, ids in option_ids.items()}, min_option_mass=min_option_mass,
                     n_tokens=n_tokens, cached_prefix_tokens=prefix)
        for row, n_tokens in zip(probs, lengths)
    ]


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


def _score_with_prefix_cache(model, prompts: Sequence[Sequence[int]], option_ids, max_batch: int,
                             min_option_mass: float) -> list[Score]:
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
            for i, score in zip(idx, _scores_from_logits(head(last), option_ids, [len(prompts[i]) for i in idx], sub,
                                                                min_option_mass)):
                scores[i] = score
    return [scores[i] for i in range(len(prompts))]


def _score_full(model, prompts: Sequence[Sequence[int]], option_ids, max_batch: int, pad_id: int,
                min_option_mass: float) -> list[Score]:
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
        for i, s in zip(idx, _scores_from_logits(logits, option_ids, [len(prompts[i]) for i in idx], 0, min_option_mass)):
            scores[i] = s
    return [scores[i] for i in range(len(prompts))]


def score_prompt_groups(
    model,
    tokenizer,
    groups: Sequence[Sequence[Sequence[int]]],
    *,
    prefix_cache: bool = True,
    max_batch: int = 8,
    min_option_mass: float = DEFAULT_MIN_OPTION_MASS,
) -> list[list[Score]]:
    """Score token-id prompts; each group (one item's prompts) shares a prefix encoded once.

    A prompt that cannot be scored (longer than the model's context, a backend error, no
    probability on the options) gets a Score with ``error`` set: a failure, never a vote. A prompt
    whose options got less than ``min_option_mass`` of the probability is scored as an
    abstention (``Score.abstained``; see ``option_score``).
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
                        got = _score_with_prefix_cache(model, prompts, option_ids, max_batch, min_option_mass)
                    else:
                        got = _score_full(model, prompts, option_ids, max_batch, pad_id, min_option_mass)
                except (RuntimeError, ValueError, IndexError) as exc:  # OOM, backend limits: record, go on
                    got = [Score(None, n_tokens=len(p), error=f"{type(exc).__name__}: {exc}"[:2000]) for p in prompts]
                for i, s in zip(runnable, got):
                    scores[i] = s
            results.append(scores)  # type: ignore[arg-type]
    return results
