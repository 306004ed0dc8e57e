"""Verdicts from next-token probabilities, with no free-text parsing (plain Python).

The forward passes, prefix caches and option probabilities are the LLM layer's
(``modeling.llm.scoring``, ``Backend.score_options``: in-process, or over a server from one
output token's top log-probabilities); this module turns what a backend returns into verdicts.
For each judge prompt (chat template with the generation prompt) the next-token probabilities of
the option tokens at the answer position (A / B / S, each with every token that spells it:
``OPTION_SPELLINGS``; in-process also the token the chat template's own preamble merges with the
letter, ``option_token_ids``) are summed per option and renormalised over the three options. The
choice is the most probable option, the confidence (1-5) comes from its probability by
``CONFIDENCE_THRESHOLDS``. Nothing is generated, so nothing can be unparseable. The summed
probability before renormalising (the option mass) decides whether the verdict is an abstention
(``score_from_mass`` / ``option_score``, rule in ``judge.reliability``), for every backend alike.

Position bias (section 5.5 of the paper reports the judge is more decisive than humans): every
(item, question) is judged in both orders; ``pair_verdict`` keeps consistent verdicts and turns
one that changes with the order into "similar", flagged as flipped, with the judge's own
confidence (the lower of its two orders').
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# The scoring engine lives in the LLM layer (issue 19); these names stay importable from here.
from modeling.llm.backends import common_prefix_length  # noqa: F401
from modeling.llm.scoring import (  # noqa: F401
    MIN_SUBPREFIX_TOKENS,
    OptionMass,
    answer_context_ids,
    context_length,
    prefix_clusters,
    score_token_groups,
)
from modeling.llm.scoring import encode_messages as _encode_messages
from modeling.llm.scoring import option_token_ids as _option_token_ids

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


def option_token_ids(tokenizer) -> dict[str, list[int]]:
    """The token ids that spell each judge option (``OPTION_SPELLINGS``); see ``modeling.llm.scoring``."""
    return _option_token_ids(tokenizer, OPTION_SPELLINGS)


def encode_messages(tokenizer, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of a judge prompt cut at the answer position; see ``modeling.llm.scoring.encode_messages``."""
    return _encode_messages(tokenizer, messages, answer=OPTIONS[0])


def score_from_mass(mass: OptionMass, *, min_option_mass: float = DEFAULT_MIN_OPTION_MASS) -> Score:
    """The judge's Score of what a backend returned for one prompt: the abstention rule applied to its masses.

    One rule for every backend: in-process and server masses both go through ``option_score``.
    """
    if mass.masses is None:
        return Score(None, n_tokens=mass.n_tokens, cached_prefix_tokens=mass.cached_prefix_tokens, error=mass.error)
    return option_score({o: mass.masses.get(o, 0.0) for o in OPTIONS}, min_option_mass=min_option_mass,
                        n_tokens=mass.n_tokens, cached_prefix_tokens=mass.cached_prefix_tokens)


def score_prompt_groups(
    model,
    tokenizer,
    groups: Sequence[Sequence[Sequence[int]]],
    *,
    prefix_cache: bool = True,
    max_batch: int = 8,
    min_option_mass: float = DEFAULT_MIN_OPTION_MASS,
) -> list[list[Score]]:
    """Score token-id prompts in-process; each group (one item's prompts) shares a prefix encoded once.

    ``modeling.llm.scoring.score_token_groups`` with the judge's options, then ``score_from_mass``:
    a prompt that cannot be scored gets a Score with ``error`` (a failure, never a vote); one whose
    options got less than ``min_option_mass`` is an abstention.
    """
    masses = score_token_groups(model, tokenizer, groups, OPTION_SPELLINGS, prefix_cache=prefix_cache,
                                max_batch=max_batch)
    return [[score_from_mass(m, min_option_mass=min_option_mass) for m in group] for group in masses]
