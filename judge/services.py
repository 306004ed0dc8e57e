"""Judge runs: create one, execute it (resumably), and write its verdicts as an LLM rater's Ratings.

The paper checks its 145 human-annotated SPC turns with Qwen2.5-32B-Instruct as a judge and then
extends the judge to 2,000 turns (section 5.5, Figure 2). Here a run is a study, a judge model, a
prompt version and a name; the name is the rater name of its Ratings (rater_kind="llm"), so every
report treats a judge like one more annotator.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from annotation.models import RATED_KINDS, Item, Rating, Study
from annotation.services import ratings_append, ratings_retire
from modeling.llm.backends import backend_for, served_model_id
from modeling.progress import Cancelled, ProgressCallback, no_progress

from .models import JudgeRun, JudgeVerdict
from .prompts import DEFAULT_PROMPT_VERSION, prompt_hash, prompt_messages, prompt_template, responses_in_order
from .reliability import DEFAULT_MIN_OPTION_MASS, min_option_mass_parse
from .scoring import OPTION_SPELLINGS, Score, pair_verdict, score_from_mass
from .selectors import judge_run_reliability, judge_run_summary

logger = logging.getLogger(__name__)

SIDES = ("A", "B")  # the baseline shown as Response A, then as Response B
DEFAULT_ITEMS_PER_BATCH = 4  # items scored, then committed in one transaction, between progress calls


class JudgeRunError(ValueError):
    """A judge run cannot be created or executed as asked; the message says why and what to do."""


def judge_default_model() -> str:
    """The paper's judge on a GPU host, the offline SmolLM2 on a CPU-only one."""
    try:
        import torch

        if torch.cuda.is_available():
            return "Qwen/Qwen2.5-32B-Instruct"
    except ImportError:  # torch missing: only the web process, which never runs a judge
        pass
    return "smollm2"


def judge_run_create(
    *,
    study: Study,
    model_id: str,
    name: str | None = None,
    prompt_version: str | None = None,
    limit: int | None = None,
    settings: dict | None = None,
    min_option_mass: float | None = None,
) -> JudgeRun:
    """Create a run, or return the existing run of that name when it is the same study, model and prompt.

    ``min_option_mass`` (0-1): verdicts whose option letters got less of the next-token
    probability abstain (``judge.reliability``); default ``DEFAULT_MIN_OPTION_MASS`` for a new
    run. It is the run's own setting: resuming with another value is refused, because the
    verdicts already stored were judged by the first.

    Returning the existing run is what makes ``run_judge`` resumable: running the same command again
    continues where it stopped instead of duplicating the rater. Without ``prompt_version``, an
    existing run keeps its own (runs made before v2 became the default resume as v1) and a new
    run gets the default.
    """
    # Under LLM_SERVER_URL a local model name is served by that server: another judge, another id.
    model_id = served_model_id(model_id)
    name = name or f"LLM-{study.slug}"
    existing = JudgeRun.objects.filter(name=name).first()
    if prompt_version is None:
        prompt_version = existing.prompt_version if existing is not None else DEFAULT_PROMPT_VERSION
    try:
        template = prompt_template(prompt_version)
    except KeyError as exc:
        raise JudgeRunError(str(exc)) from None
    if limit is not None and limit < 1:
        raise JudgeRunError(f"limit must be a positive number of items, got {limit}.")
    if min_option_mass is not None:
        try:
            min_option_mass = min_option_mass_parse(min_option_mass)
        except ValueError as exc:
            raise JudgeRunError(str(exc)) from None
    if existing is not None:
        if min_option_mass is not None and min_option_mass != existing.min_option_mass:
            raise JudgeRunError(
                f"Judge run {name!r} abstains below an option mass of {existing.min_option_mass:g}, not "
                f"{min_option_mass:g}; its stored verdicts were judged by that. Pick another name (--name) for a run "
                f"with another minimum."
            )
        if (existing.study_id, existing.model_id, existing.prompt_version) != (study.pk, model_id, prompt_version):
            raise JudgeRunError(
                f"A judge run named {name!r} already exists for study {existing.study.slug!r}, model "
                f"{existing.model_id!r}, prompt {existing.prompt_version!r}; pick another name (--name) to "
                f"start a new run, or repeat its settings to resume it."
            )
        if limit is not None and existing.settings.get("limit") != limit:
            existing.settings = {**existing.settings, "limit": limit}
            existing.save(update_fields=["settings"])
        return existing
    if get_user_model().objects.filter(username=name).exists() or Rating.objects.filter(
        rater=name, rater_kind=Rating.RaterKind.HUMAN
    ).exists():
        raise JudgeRunError(f"{name!r} is already a human annotator's name; a judge run needs its own rater name (--name).")
    if not study.questions.exists():
        raise JudgeRunError(f"Study {study.slug!r} has no questions to judge.")
    if not study.items.exists():
        raise JudgeRunError(f"Study {study.slug!r} has no items to judge.")
    return JudgeRun.objects.create(
        name=name, study=study, model_id=model_id, prompt_version=template.version, prompt_text=template.as_text(),
        min_option_mass=DEFAULT_MIN_OPTION_MASS if min_option_mass is None else min_option_mass,
        settings={"limit": limit, "items_per_batch": DEFAULT_ITEMS_PER_BATCH, "quantization": "auto",
                  "prefix_cache": True, **(settings or {})},
    )


@dataclass
class _Pending:
    """One prompt still to be scored: an (item, question, order) without a stored verdict."""

    item: Item
    question: str
    baseline_side: str
    messages: list[dict]


def judge_run_items(*, run: JudgeRun, limit: int | None = None) -> list[Item]:
    """The items a run judges, in their fixed order (by primary key): the first ``limit`` (default:
    the run's own limit) of its study. Shards of a run (``item_range``) are slices of this list."""
    limit = limit if limit is not None else run.settings.get("limit")
    items = run.study.items.filter(kind__in=RATED_KINDS).order_by("pk")
    return list(items[:limit] if limit else items)


def judge_run_execute(
    *, run: JudgeRun, limit: int | None = None, progress: ProgressCallback | None = None,
    item_range: tuple[int, int] | None = None,
) -> dict:
    """Judge every (item, question) of the run's study in both orders and write the Ratings.

    Resumable: verdicts already stored (not failed) are kept and not recomputed; each batch of
    items is committed in one transaction before ``progress`` is called, so a ``Cancelled`` raised
    by the callback (or a killed process) loses at most the batch in flight. Failed verdicts are
    retried on the next execution. Returns the run's summary (also stored in ``run.summary``).

    ``item_range`` (start, stop): judge only ``judge_run_items(run)[start:stop]``, one shard of a
    run spread over several workers (worker/shards.py). A shard leaves the run RUNNING and
    returns only its own counts ({"items", "computed", "seconds", "usage"}); the run's summary
    and reliability verdict are computed once, over every item, by ``judge_run_finish``.
    """
    progress = progress or no_progress
    started = time.monotonic()
    template = prompt_template(run.prompt_version)
    study = run.study
    questions = list(study.questions.order_by("order", "key"))
    items = judge_run_items(run=run, limit=limit)
    if not questions or not items:
        raise JudgeRunError(f"Study {study.slug!r} has no {'questions' if not questions else 'items'} to judge.")
    if item_range is not None:
        start, stop = item_range
        if not 0 <= start < stop <= len(items):
            raise JudgeRunError(f"Item range {start}-{stop} is outside the run's {len(items)} items.")
        items = items[start:stop]
        # A reliability verdict describes a finished run: the shards' run is assessed when all finish.
        JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.RUNNING, finished_at=None, reliability={})
        computed, usage = _judge_items(run=run, items=items, questions=questions, template=template, progress=progress)
        return {"items": len(items), "computed": computed, "seconds": round(time.monotonic() - started, 2),
                "usage": usage}

    JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.RUNNING, finished_at=None, reliability={})
    computed, usage = _judge_items(run=run, items=items, questions=questions, template=template, progress=progress)
    return judge_run_finish(run=run, items=items, computed=computed, seconds=time.monotonic() - started, usage=usage)


def judge_run_finish(
    *, run: JudgeRun, items: list[Item] | None = None, computed: int = 0, seconds: float = 0.0,
    usage: dict | None = None,
) -> dict:
    """Summarise a finished run over all its ``items`` (default ``judge_run_items(run)``), assess its
    reliability once, store both and mark it SUCCEEDED. ``computed``: prompts scored by this
    execution (all shards); ``seconds``: its wall time; ``usage``: a server's token counts."""
    items = items if items is not None else judge_run_items(run=run)
    summary = judge_run_summary(run=run, items=items)
    summary["computed"] = computed
    summary["seconds"] = round(seconds, 2)
    if usage:  # a server's token usage during this execution
        summary["usage"] = usage
    # Assessed once, when the run finishes, and stored: pages and reports only read it.
    summary["reliability"] = judge_run_reliability(run=run, summary=summary)
    JudgeRun.objects.filter(pk=run.pk).update(
        status=JudgeRun.Status.SUCCEEDED, summary=summary, reliability=summary["reliability"],
        finished_at=timezone.now(),
    )
    run.refresh_from_db()
    logger.info("judge run %s: %s", run.name, summary)
    return summary


def _judge_items(*, run: JudgeRun, items: list[Item], questions, template, progress: ProgressCallback) -> tuple[int, dict]:
    """Score and store every prompt of ``items`` still without a verdict; (prompts computed, token usage)."""

    done = set(
        JudgeVerdict.objects.filter(run=run, failed=False, item__in=[i.pk for i in items]).values_list(
            "item_id", "question", "baseline_side"
        )
    )
    total = len(items) * len(questions) * len(SIDES)
    progress(len(done), total)
    batch_size = max(1, int(run.settings.get("items_per_batch") or DEFAULT_ITEMS_PER_BATCH))
    try:
        # The LLM layer: in-process (forward passes, prefix caches) or a server (top log-probabilities).
        backend = backend_for(run.model_id, quantization=run.settings.get("quantization", "auto"))
        usage_before = backend.usage()
        computed = 0
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            groups = [_pending_for_item(item, questions, done, template) for item in batch]
            groups = [g for g in groups if g]
            masses = backend.score_options(
                [[p.messages for p in g] for g in groups], OPTION_SPELLINGS,
                prefix_cache=bool(run.settings.get("prefix_cache", True)),
            ) if groups else []
            # One abstention rule for every backend (judge.reliability), applied here.
            scores = [[score_from_mass(m, min_option_mass=run.min_option_mass) for m in g] for g in masses]
            with transaction.atomic():
                for group, group_scores in zip(groups, scores):
                    for pending, score in zip(group, group_scores):
                        _verdict_store(run=run, pending=pending, score=score)
                        if not score.failed:
                            done.add((pending.item.pk, pending.question, pending.baseline_side))
                        computed += 1
                # Also for a batch with nothing left to score: verdicts stored without their
                # ratings (by an older version, or by hand for an audit) still become ratings.
                _ratings_write(run=run, items=batch, questions=[q.key for q in questions])
            progress(len(done), total)
    except Cancelled:
        JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.CANCELLED)
        raise
    except Exception:
        JudgeRun.objects.filter(pk=run.pk).update(status=JudgeRun.Status.FAILED, finished_at=timezone.now())
        raise
    usage_after = backend.usage()
    return computed, {k: v - usage_before.get(k, 0) for k, v in usage_after.items()}


def judge_item_prompts(*, item: Item, questions, template) -> list[tuple[str, str, list[dict]]]:
    """(question key, baseline side, chat messages) for every question of ``item`` in both orders.

    The prompt holds only what an annotator sees (persona, history, generic response, the two
    responses as A and B, the question), never the systems' names.
    """
    questions = list(questions)
    texts = [q.text for q in questions]
    prompts = []
    for question in questions:
        for side in SIDES:
            response_a, response_b = responses_in_order(
                baseline=item.baseline_response, challenger=item.challenger_response, baseline_side=side
            )
            messages = prompt_messages(
                template=template, persona=item.persona, history=item.history or [],
                generic_response=item.generic_response, response_a=response_a, response_b=response_b,
                question=question.text, all_questions=texts,
            )
            prompts.append((question.key, side, messages))
    return prompts


def _pending_for_item(item: Item, questions, done: set, template) -> list[_Pending]:
    return [
        _Pending(item, key, side, messages)
        for key, side, messages in judge_item_prompts(item=item, questions=questions, template=template)
        if (item.pk, key, side) not in done
    ]


def _verdict_store(*, run: JudgeRun, pending: _Pending, score: Score) -> None:
    JudgeVerdict.objects.update_or_create(
        run=run, item=pending.item, question=pending.question, baseline_side=pending.baseline_side,
        defaults={
            "probabilities": score.probabilities or {},
            "raw": {"prompt_hash": prompt_hash(pending.messages), "n_tokens": score.n_tokens,
                    "cached_prefix_tokens": score.cached_prefix_tokens, "option_mass": score.option_mass,
                    "choice": score.choice, "confidence": score.confidence},
            "option_mass": None if score.failed else score.option_mass,
            "abstained": score.abstained,
            "failed": score.failed,
            "error": score.error,
        },
    )


def _ratings_write(*, run: JudgeRun, items: Iterable[Item], questions: list[str]) -> int:
    """Write (or keep) the current Rating of every (item, question) whose two orders are both scored.

    A pair with a failed or abstained order gets no Rating: neither is a vote (an abstention that
    replaces an earlier verdict retires that verdict's Rating). Ratings are append-only: an
    unchanged verdict keeps its row, a changed one retires the old row (is_current=False).

    A flipped pair's Rating is "similar" with the judge's own confidence and ``meta["flipped"]``;
    the aggregation counts it at every minimum confidence, so the study's threshold, then or
    later, changes nothing for it (docs/judge.md).
    """
    items = list(items)
    verdicts: dict[tuple[int, str], dict[str, JudgeVerdict]] = {}
    for v in JudgeVerdict.objects.filter(run=run, item__in=[i.pk for i in items], failed=False):
        verdicts.setdefault((v.item_id, v.question), {})[v.baseline_side] = v
    ratings, retire = [], []
    for item in items:
        for question in questions:
            orders = verdicts.get((item.pk, question), {})
            if set(orders) != set(SIDES):
                continue
            if any(v.abstained for v in orders.values()):
                retire.append((item.pk, question, run.name))
                continue
            verdict = pair_verdict(baseline_as_a=orders["A"].probabilities, baseline_as_b=orders["B"].probabilities)
            meta = {
                "judge_run": run.pk,
                "model": run.model_id,
                "prompt_version": run.prompt_version,
                "probabilities": {k: round(p, 6) for k, p in verdict.probabilities.items()},
                "orders": verdict.orders,
                "shown_probabilities": {side: orders[side].probabilities for side in SIDES},
                "order_confidences": verdict.order_confidences,
                "option_mass": {side: orders[side].option_mass for side in SIDES},
                "flipped": verdict.flipped,
            }
            ratings.append(Rating(
                item=item, question=question, rater=run.name, rater_kind=Rating.RaterKind.LLM,
                choice=verdict.choice, confidence=verdict.confidence, meta=meta,
            ))
    ratings_retire(keys=retire)
    return sum(r.is_new for r in ratings_append(ratings=ratings, compare=("choice", "confidence", "meta")))
