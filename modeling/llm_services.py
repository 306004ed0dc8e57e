"""Drive the LLM layer from the database: generic-response augmentation and the ICL baselines.

The prompts, backends and post-processing live in ``modeling.llm`` (no Django); this module picks
the samples, looks every rendered prompt up in the LLMCache first, generates only what is
missing, and commits each finished batch (cache rows and results together) before reporting
progress. So a rerun or a resumed job costs nothing for done samples, and a job killed or
cancelled midway loses at most the batch in flight.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils.text import slugify

from .llm.backends import Backend, GenerationSettings, backend_for, generation_cache_key, served_model_id
from .llm.loading import SMOLLM2, SMOLLM2_ALIASES
from .llm.postprocess import clean_generic_response, clean_response
from .llm.prompts import ICLExample, augment_template, icl_template
from .models import Dataset, LLMCache, MetricResult, Response, Sample, System
from .progress import ProgressCallback, no_progress
from .text import degenerate_flags, flag_counts

logger = logging.getLogger(__name__)

ICL_METHODS = (System.Method.ICL_HIST, System.Method.ICL_TST)
MAX_SHOTS = 5  # section 4.3.1: n = 0..5
PAPER_SEEDS = (0, 1, 2, 3, 4)  # section 4.3.1: for n > 0, five repeats with different seeds
AUGMENT_SETTINGS = GenerationSettings(max_new_tokens=64)
# ICL replies run longer than generic ones (section 5.2, Table 4).
ICL_SETTINGS = GenerationSettings(max_new_tokens=96)
_LOOKUP_CHUNK = 500


class LLMServiceError(ValueError):
    """The LLM job cannot run as asked; the message says what is wrong and what to do."""


def canonical_model_id(model_id: str) -> str:
    """One name per model, so the LLMCache and stored results do not split over aliases."""
    model_id = (model_id or "").strip()
    if not model_id:
        raise LLMServiceError("No model given; pass a hub id, a local folder, openai:<model>@<url> or 'smollm2'.")
    # Under LLM_SERVER_URL a local name is served by that server: it is another model id.
    return served_model_id(SMOLLM2 if model_id in SMOLLM2_ALIASES else model_id)


@dataclass
class _Prompt:
    key: object  # what the store callback needs to put the result in place (a Sample)
    messages: list[dict]
    hash: str


@dataclass
class _Result:
    """One prompt's answer as the store callback gets it."""

    prompt: _Prompt
    output: str  # cleaned: what is stored as the response
    raw: str  # the model's completion
    flags: dict  # modeling.text.degenerate_flags of clean_response(raw), before any loop cut


def _result(prompt: _Prompt, raw: str, clean: Callable[[str], str]) -> _Result:
    """Clean ``raw`` and flag what is degenerate in it (loops, cut mid-sentence, token limit, empty)."""
    return _Result(prompt=prompt, output=clean(raw), raw=raw,
                   flags=degenerate_flags(clean_response(raw), hit_limit=getattr(raw, "hit_limit", None)))


def _generate_cached(
    *, prompts: list[_Prompt], model_id: str, prompt_version: str, settings: GenerationSettings,
    batch_size: int, backend: Backend | Callable[[], Backend], store: Callable[[list[_Result]], None],
    progress: ProgressCallback, done_before: int, total: int, clean: Callable[[str], str] = clean_response,
) -> dict:
    """Answer every prompt from the cache or the backend; ``store`` each batch in its transaction.

    ``backend`` may be a factory, so that a fully cached run never loads the model. ``clean``
    turns a raw completion into the stored output; a cache hit is cleaned again from its raw
    text, so a fixed post-processing rule applies to cached generations too. Whether a cached
    generation hit the token limit is not stored, so its flags say hit_limit None.
    """
    cached: dict[str, LLMCache] = {}
    hashes = list(dict.fromkeys(p.hash for p in prompts))
    for start in range(0, len(hashes), _LOOKUP_CHUNK):
        chunk = hashes[start:start + _LOOKUP_CHUNK]
        for row in LLMCache.objects.filter(model_id=model_id, prompt_version=prompt_version, prompt_hash__in=chunk):
            cached[row.prompt_hash] = row
    hits = [p for p in prompts if p.hash in cached]
    missing = [p for p in prompts if p.hash not in cached]
    done = done_before
    if hits:
        with transaction.atomic():
            store([_result(p, cached[p.hash].raw_output, clean) if cached[p.hash].raw_output
                   else _Result(prompt=p, output=cached[p.hash].output, raw="",
                                flags=degenerate_flags(cached[p.hash].output))
                   for p in hits])
        done += len(hits)
    progress(done, total)
    if not missing:
        return {"generated": 0, "cached": len(hits)}

    # One generation per distinct prompt (two samples can share a rendered prompt).
    unique = list({p.hash: p for p in missing}.values())
    by_hash: dict[str, list[_Prompt]] = {}
    for p in missing:
        by_hash.setdefault(p.hash, []).append(p)
    engine = backend() if callable(backend) and not isinstance(backend, Backend) else backend

    def on_batch(indices: list[int], raws: list[str]) -> None:
        nonlocal done
        finished = []
        rows = []
        for i, raw in zip(indices, raws):
            prompt = unique[i]
            answer = _result(prompt, raw, clean)
            rows.append(LLMCache(model_id=model_id, prompt_version=prompt_version, prompt_hash=prompt.hash,
                                 output=answer.output, raw_output=str(raw)))
            finished += [_Result(prompt=p, output=answer.output, raw=str(raw), flags=answer.flags)
                         for p in by_hash[prompt.hash]]
        with transaction.atomic():
            LLMCache.objects.bulk_create(rows, ignore_conflicts=True)
            store(finished)
        done += len(finished)
        progress(done, total)  # may raise Cancelled: this batch is already committed

    engine.generate([p.messages for p in unique], settings=settings, batch_size=batch_size, on_batch=on_batch)
    return {"generated": len(unique), "cached": len(hits)}


def _samples(*, dataset: Dataset, split: str, limit: int | None) -> list[Sample]:
    if limit is not None and limit < 1:
        raise LLMServiceError(f"limit must be at least 1, got {limit}")
    samples = list(dataset.samples.filter(split=split).order_by("pk")[:limit] if limit
                   else dataset.samples.filter(split=split).order_by("pk"))
    if not samples:
        splits = sorted(set(dataset.samples.values_list("split", flat=True)))
        raise LLMServiceError(
            f"Dataset {dataset.name!r} has no samples in split {split!r} "
            f"(it has: {', '.join(splits) or 'none'}); import that split first."
        )
    return samples


def llm_samples(*, dataset: Dataset, split: str, limit: int | None) -> list[Sample]:
    """The samples an augment or ICL job over ``dataset``/``split`` works on: the first ``limit`` by
    primary key (its shards are slices of this list). Raises LLMServiceError for none or limit < 1."""
    return _samples(dataset=dataset, split=split, limit=limit)


def _slice(samples: list[Sample], sample_range: tuple[int, int] | None) -> list[Sample]:
    """The shard ``sample_range`` (start, stop) of ``samples``; all of them for None."""
    if sample_range is None:
        return samples
    start, stop = sample_range
    if not 0 <= start < stop <= len(samples):
        raise LLMServiceError(f"Sample range {start}-{stop} is outside the {len(samples)} samples.")
    return samples[start:stop]


def _backend_factory(model_id: str, backend: Backend | None) -> Backend | Callable[[], Backend]:
    return backend if backend is not None else (lambda: backend_for(model_id))


def augment_dataset(
    *, dataset: Dataset, split: str, model_id: str = SMOLLM2, limit: int | None = None, batch_size: int = 8,
    progress: ProgressCallback = no_progress, prompt_version: str | None = None,
    settings: GenerationSettings = AUGMENT_SETTINGS, backend: Backend | None = None,
    sample_range: tuple[int, int] | None = None,
) -> dict:
    """Generate the generic response R_G of every sample of ``dataset``/``split`` (section 3.1).

    ``sample_range`` (start, stop): only those samples of the split's first ``limit`` (by primary
    key), one shard of a job spread over several workers; the summary then counts that shard.

    Samples whose R_G already comes from this model and prompt version are done; the rest are
    answered from the LLMCache or generated. Each R_G is cleaned by clean_generic_response (a
    repetition loop is cut to its first occurrence) and its degenerate-output flags are kept in
    ``Sample.generic_meta["degenerate"]``. Returns a summary (the command prints it, the job
    stores it) whose "degenerate" counts the flagged generations.
    """
    started = time.monotonic()
    model_id = canonical_model_id(backend.model_id if backend is not None else model_id)
    template = augment_template(dataset.kind, prompt_version)
    samples = _slice(_samples(dataset=dataset, split=split, limit=limit), sample_range)
    done = [s for s in samples if s.generic_response and s.generic_model == model_id
            and s.generic_prompt_version == template.version]
    done_pks = {s.pk for s in done}
    todo = [s for s in samples if s.pk not in done_pks]
    prompts = []
    for sample in todo:
        messages = template.messages(history=sample.history)
        prompts.append(_Prompt(key=sample, messages=messages, hash=generation_cache_key(messages=messages, settings=settings)))

    def store(results: list[_Result]) -> None:
        changed = []
        for result in results:
            sample = result.prompt.key
            sample.generic_response, sample.generic_model, sample.generic_prompt_version = (
                result.output, model_id, template.version)
            sample.generic_meta = {**sample.generic_meta, "degenerate": result.flags}
            changed.append(sample)
        Sample.objects.bulk_update(
            changed, ["generic_response", "generic_model", "generic_prompt_version", "generic_meta"])

    counts = _generate_cached(
        prompts=prompts, model_id=model_id, prompt_version=template.version, settings=settings,
        batch_size=batch_size, backend=_backend_factory(model_id, backend), store=store, progress=progress,
        done_before=len(done), total=len(samples), clean=clean_generic_response,
    )
    summary = {
        "dataset": dataset.name, "split": split, "model": model_id, "prompt_version": template.version,
        "samples": len(samples), "already_done": len(done), **counts,
        "empty": sum(1 for s in samples if not s.generic_response),
        # Flagged generations (of every sample of the call; "unchecked": done before flags existed).
        # A loop was cut to its first occurrence in the stored R_G (clean_generic_response).
        "degenerate": flag_counts(s.generic_meta.get("degenerate") for s in samples),
        "seconds": round(time.monotonic() - started, 2),
    }
    logger.info("augment: %s", summary)
    return summary


def icl_system_name(*, dataset: Dataset, method: str, n_shot: int, seed: int | None, model_id: str) -> str:
    seed_part = f"-seed{seed}" if n_shot and seed is not None else ""
    return f"{dataset.name}-{method}-{n_shot}shot{seed_part}-{slugify(model_id.replace('/', '-'))}"[:200]


def icl_shots(*, pool: Sequence[int], n_shot: int, seed: int) -> list[int]:
    """The n demonstrations for one seed: a seeded draw from the training split (section 4.3.1)."""
    return sorted(random.Random(seed).sample(list(pool), n_shot)) if n_shot else []


def icl_generate(
    *, dataset: Dataset, split: str, method: str, n_shot: int = 0, seeds: Sequence[int] | None = None,
    model_id: str = SMOLLM2, limit: int | None = None, progress: ProgressCallback = no_progress,
    batch_size: int = 8, shot_split: str = "train", settings: GenerationSettings = ICL_SETTINGS,
    backend: Backend | None = None, sample_range: tuple[int, int] | None = None,
) -> list[System]:
    """Run ICL(Hist) or ICL(TST) (section 4.2.1) with ``n_shot`` demonstrations from ``shot_split``.

    ``sample_range`` (start, stop): answer only those targets (of the split's first ``limit``), one
    shard of a job spread over several workers. The demonstrations are drawn as for the whole
    job, so every shard uses the same ones; a shard leaves each System's run statistics and
    status to ``icl_system_finish``, called once all shards are done, and stores its own
    counts in ``system.shard_counts``.

    One System per seed (n = 0 needs one: its prompt has nothing random), each with a Response per
    sample, named so that the seeds of one setting share a prefix; ``System.config["seed_group"]``
    names the setting whose metrics the paper averages over the five seeds. Each Response's
    meta["degenerate"] holds its degenerate-output flags (the text is kept as generated), and
    ``System.config["run"]["degenerate"]`` counts them.
    """
    if method not in ICL_METHODS:
        raise LLMServiceError(f"Unknown ICL method {method!r}; choose icl_hist or icl_tst.")
    if not 0 <= n_shot <= MAX_SHOTS:
        raise LLMServiceError(f"n_shot must be between 0 and {MAX_SHOTS}, got {n_shot}")
    seeds = list(seeds) if seeds else list(PAPER_SEEDS)
    if n_shot == 0:
        seeds = seeds[:1]
    model_id = canonical_model_id(backend.model_id if backend is not None else model_id)
    template = icl_template(method, dataset.kind)
    all_targets = _samples(dataset=dataset, split=split, limit=limit)
    targets = _slice(all_targets, sample_range)
    tst = method == System.Method.ICL_TST
    if tst:
        lacking = [s.key for s in targets if not s.generic_response]
        if lacking:
            raise LLMServiceError(
                f"ICL(TST) rewrites the generic response, but {len(lacking)} of {len(targets)} samples of "
                f"{dataset.name}/{split} have none (e.g. {lacking[0]}); run `augment --dataset {dataset.name} "
                f"--split {split}` first."
            )
    pool: list[int] = []
    if n_shot:
        pool_qs = dataset.samples.filter(split=shot_split).exclude(pk__in=[s.pk for s in all_targets])
        if tst:
            pool_qs = pool_qs.exclude(generic_response="")
        pool = list(pool_qs.order_by("key").values_list("pk", flat=True))
        if len(pool) < n_shot:
            raise LLMServiceError(
                f"{n_shot}-shot ICL needs {n_shot} demonstrations from split {shot_split!r} of {dataset.name!r}"
                f"{' with a generic response' if tst else ''}, but only {len(pool)} exist; import (and for "
                f"ICL(TST) augment) that split, or pass another shot split."
            )

    total = len(targets) * len(seeds)
    systems: list[System] = []
    done_before = 0
    engine = _backend_factory(model_id, backend)
    group = icl_system_name(dataset=dataset, method=method, n_shot=n_shot, seed=None, model_id=model_id)
    for seed in seeds:
        shot_ids = icl_shots(pool=pool, n_shot=n_shot, seed=seed)
        shots_by_pk = Sample.objects.in_bulk(shot_ids)
        examples = [
            ICLExample(persona=s.agent_persona, history=s.history, generic_response=s.generic_response,
                       response=s.reference)
            for s in (shots_by_pk[pk] for pk in shot_ids)
        ]
        name = icl_system_name(dataset=dataset, method=method, n_shot=n_shot, seed=seed, model_id=model_id)
        system, _ = System.objects.update_or_create(name=name, defaults={
            "method": method, "dataset": dataset, "backbone": model_id, "generation": settings.as_dict(),
            "config": {"n_shot": n_shot, "seed": seed, "seed_group": group, "split": split,
                       "shot_split": shot_split, "shot_keys": [shots_by_pk[pk].key for pk in shot_ids],
                       "prompt_version": template.version, "model": model_id},
        })
        prompts = []
        for sample in targets:
            messages = template.messages(persona=sample.agent_persona, history=sample.history,
                                         generic_response=sample.generic_response, examples=examples)
            prompts.append(_Prompt(key=sample, messages=messages, hash=generation_cache_key(messages=messages, settings=settings)))

        def store(results: list[_Result], system=system):
            for result in results:
                Response.objects.update_or_create(system=system, sample=result.prompt.key, defaults={
                    "text": result.output,
                    "meta": {"prompt_hash": result.prompt.hash, "raw": result.raw, "degenerate": result.flags}})

        counts = _generate_cached(
            prompts=prompts, model_id=model_id, prompt_version=template.version, settings=settings,
            batch_size=batch_size, backend=engine, store=store, progress=progress, done_before=done_before,
            total=total,
        )
        done_before += len(targets)
        if sample_range is None:
            icl_system_finish(system=system, targets=targets, counts=counts)
        system.shard_counts = counts
        systems.append(system)
    return systems


def icl_system_finish(*, system: System, targets: Sequence[Sample], counts: dict) -> None:
    """Store an ICL system's run statistics over ``targets`` (its responses, degenerate-output flag
    counts, ``counts`` of generated and cached prompts) and mark it generated."""
    flags = flag_counts(meta.get("degenerate") for meta in
                        system.responses.filter(sample__in=targets).values_list("meta", flat=True))
    system.config = {**system.config, "run": {**counts, "responses": system.responses.count(), "degenerate": flags}}
    system.status = System.Status.GENERATED
    system.save(update_fields=["config", "status"])


def icl_seed_group_metrics(*, seed_group: str, split: str = "test") -> dict:
    """Corpus-level metrics of an ICL setting averaged over its seeds (section 4.3.1's protocol).

    Returns {"systems": [...names], "metrics": {name: mean}, "seeds": {name: n}}; a metric counts
    only the seeds that have it, and ``seeds`` says how many that was.
    """
    from django.db.models import Avg, Count

    systems = list(System.objects.filter(config__seed_group=seed_group).order_by("name"))
    if not systems:
        raise LLMServiceError(f"No ICL systems in seed group {seed_group!r}; run run_icl first.")
    rows = (MetricResult.objects.filter(system__in=systems, sample__isnull=True, split=split)
            .values("name").annotate(mean=Avg("value"), n=Count("system", distinct=True)).order_by("name"))
    return {"systems": [s.name for s in systems], "metrics": {r["name"]: r["mean"] for r in rows},
            "seeds": {r["name"]: r["n"] for r in rows}}
