"""Option scoring: the next-token probability a chat model gives each of a few answer options.

A backend capability next to ``generate`` (``Backend.score_options``). For each chat prompt
(rendered with the generation prompt) the next-token distribution at the answer position gives,
per option, the summed probability of every token that spells it (``options``: option -> its
spellings, e.g. ``{"A": ("A", "a", " A", " a"), ...}``). The result per prompt is an
``OptionMass``: those per-option masses before renormalising (their sum is the *option mass*),
the prompt's length, or an error. Rules on what the masses mean (abstention, confidence) belong
to the caller: the LLM judge applies ``judge.reliability`` to whatever a backend returns.

In-process (``TransformersBackend``, this module's engine): one forward pass per prompt, no
generation. The prompts of one group (the judge: one item's four questions x two orders) share
their start (instructions, persona, history, generic response), and the prompts of one order
also share both responses. The shared prefix is encoded once, then each order's shared part once
on a copy of its key/value cache, which is then repeated along the batch so that only the
questions are run, batched and right-padded. ``prefix_cache=False`` runs full prompts sorted by
length with left padding; both give the same numbers (tests/judge/test_judge_runs.py).

Over a server (``OpenAICompatibleBackend.score_options``): one chat completion per prompt with
``max_tokens=1`` and the top log-probabilities; the masses are the probabilities of the returned
top tokens that spell an option (see that method).

Moved here from ``judge/scoring.py`` (issue 19) so that the judge loads its model through
``backend_for`` like augmentation and ICL; plain Python + torch, no Django.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .backends import common_prefix_length, left_pad

Spellings = Mapping[str, Sequence[str]]  # option -> the texts that count as answering it

# A conversation rendered by the model's chat template to find the answer position's tokens.
_PROBE_MESSAGES = ({"role": "system", "content": "Answer with a single letter: A, B or S."},
                   {"role": "user", "content": "Which response is better?"})


@dataclass(frozen=True)
class OptionMass:
    """What one prompt's next token gave the options, before any rule is applied.

    ``masses``: option -> summed next-token probability of its spellings (each in [0, 1], their
    sum at most 1), or None when the prompt could not be scored (``error`` says why: too long,
    a server error). ``n_tokens``: the prompt's length in tokens; ``cached_prefix_tokens``: how
    many of them came from a reused key/value cache (in-process only).
    """

    masses: dict[str, float] | None
    n_tokens: int = 0
    cached_prefix_tokens: int = 0
    error: str = ""

    @property
    def total(self) -> float:
        """The option mass: the probability the options got together (0.0 for a failure)."""
        return 0.0 if self.masses is None else float(sum(self.masses.values()))

    @property
    def probabilities(self) -> dict[str, float] | None:
        """The masses renormalised over the options (summing to 1); None for a failure or no mass."""
        total = self.total
        if self.masses is None or not math.isfinite(total) or total <= 0.0:
            return None
        return {o: m / total for o, m in self.masses.items()}


def first_answer(options: Spellings) -> str:
    """The first option's first spelling: the text ``answer_context_ids`` puts after a prompt."""
    return next(iter(next(iter(options.values()))))


def _single_token(tokenizer, text: str) -> int | None:
    encoded = tokenizer.encode(text, add_special_tokens=False)
    return encoded[0] if len(encoded) == 1 else None


def option_token_ids(tokenizer, options: Spellings) -> dict[str, list[int]]:
    """The token ids that spell each option as the model's answer; raise if an option has none.

    Two sources, united: each spelling of ``options`` encoded alone when it is one
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
        context = answer_context_ids(tokenizer, probe, answer=first_answer(options))
        for spellings in options.values():
            for spelling in spellings:
                ids = tokenizer(probe + spelling, add_special_tokens=False)["input_ids"]
                if len(ids) == len(context) + 1 and ids[:len(context)] == context:
                    context_ids.setdefault(spelling, ids[-1])
    ids: dict[str, list[int]] = {}
    seen: dict[int, str] = {}
    for option, spellings in options.items():
        found = []
        for spelling in spellings:
            for token in (_single_token(tokenizer, spelling), context_ids.get(spelling)):
                if token is None or token in found:
                    continue
                if token in seen:
                    raise ValueError(f"token {token} encodes both {seen[token]!r} and {option!r}")
                seen[token] = option
                found.append(token)
        if not found:
            raise ValueError(f"the tokenizer has no single token for the option {option!r}")
        ids[option] = found
    return ids


def answer_context_ids(tokenizer, text: str, *, answer: str = "A") -> list[int]:
    """Token ids of a prompt ``text`` (ending with the generation prompt) as they stand before the answer.

    Tokenizers split text differently when more follows: the answer's first token may swallow
    the preamble's trailing space, or trailing newlines may split otherwise. The model's next
    token is predicted from the tokens it would have seen with its answer written, so the prompt
    is cut where ``text`` followed by the answer letter puts the boundary.
    """
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    answered = tokenizer(text + answer, add_special_tokens=False)["input_ids"]
    if answered[:len(plain)] == plain:
        return plain  # the common case: the letter starts a token of its own after the prompt
    if len(answered) > 1 and tokenizer.decode(answered[-1:]).strip() == answer.strip():
        return answered[:-1]  # the letter's token took the preamble's end with it
    return plain  # the letter merged into a word: no clean answer position, keep the text's own split


def encode_messages(tokenizer, messages: Sequence[Mapping[str, str]], *, answer: str = "A") -> list[int]:
    """Token ids of a chat prompt ending with the assistant's generation prompt, cut at the answer position."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    # The chat template already holds any special tokens the model needs (BOS, <|im_start|>).
    return answer_context_ids(tokenizer, text, answer=answer)


def context_length(model) -> int | None:
    """The longest sequence the model accepts, when its config says."""
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _masses_from_logits(logits, option_ids: Mapping[str, list[int]], lengths, prefix: int) -> list[OptionMass]:
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    return [
        OptionMass({o: float(row[ids].sum()) for o, ids in option_ids.items()}, n_tokens, prefix)
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


def _score_with_prefix_cache(model, prompts: Sequence[Sequence[int]], option_ids, max_batch: int) -> list[OptionMass]:
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
    scores: dict[int, OptionMass] = {}
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
            for i, score in zip(idx, _masses_from_logits(head(last), option_ids, [len(prompts[i]) for i in idx], sub)):
                scores[i] = score
    return [scores[i] for i in range(len(prompts))]


def _score_full(model, prompts: Sequence[Sequence[int]], option_ids, max_batch: int, pad_id: int) -> list[OptionMass]:
    """Whole prompts, batched by similar length with left padding, one forward pass each batch."""
    device = model.device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    scores: dict[int, OptionMass] = {}
    for start in range(0, len(order), max_batch):
        idx = order[start:start + max_batch]
        input_ids, mask = (t.to(device) for t in left_pad([prompts[i] for i in idx], pad_id))
        # Positions count real tokens only, as in generate(), so padding does not shift them.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits[:, -1]
        for i, s in zip(idx, _masses_from_logits(logits, option_ids, [len(prompts[i]) for i in idx], 0)):
            scores[i] = s
    return [scores[i] for i in range(len(prompts))]


def score_token_groups(
    model,
    tokenizer,
    groups: Sequence[Sequence[Sequence[int]]],
    options: Spellings,
    *,
    prefix_cache: bool = True,
    max_batch: int = 8,
) -> list[list[OptionMass]]:
    """Option masses of token-id prompts; each group (e.g. one judged item's prompts) shares a prefix encoded once.

    ``groups``: lists of prompts, each a list of token ids cut at the answer position
    (``encode_messages``). Returns one ``OptionMass`` per prompt, in the groups' shape. A prompt
    that cannot be scored (longer than the model's context, empty, an error in the forward pass
    such as out of memory) gets an ``OptionMass`` with ``error`` set and no masses; nothing raises
    for one prompt. Raises ValueError when the tokenizer has no token for an option.
    """
    import torch

    option_ids = option_token_ids(tokenizer, options)
    limit = context_length(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results: list[list[OptionMass]] = []
    with torch.inference_mode():
        for group in groups:
            scores: list[OptionMass | None] = [None] * len(group)
            runnable = []
            for i, prompt in enumerate(group):
                if limit is not None and len(prompt) > limit:
                    scores[i] = OptionMass(None, n_tokens=len(prompt), error=(
                        f"the prompt has {len(prompt)} tokens, more than the model's context of {limit}"))
                elif not prompt:
                    scores[i] = OptionMass(None, error="empty prompt")
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
                    got = [OptionMass(None, n_tokens=len(p), error=f"{type(exc).__name__}: {exc}"[:2000])
                           for p in prompts]
                for i, s in zip(runnable, got):
                    scores[i] = s
            results.append(scores)  # type: ignore[arg-type]
    return results
