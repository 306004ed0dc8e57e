"""Studies: creating them (from a file, the API or two systems' responses), their settings, questions and trap items."""

import hashlib
import json
import math
import random
import re
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from modeling.models import Response, Sample, System

from ..giveaways import study_check_flagged, text_giveaways
from ..keys import key_normalise
from ..models import (
    DEFAULT_QUESTIONS,
    RATED_KINDS,
    Item,
    Question,
    Rating,
    Study,
)
from .base import StudyFieldError, StudyFileError
from .study_files import item_row_parse, study_file_read


def study_questions_create(*, study: Study) -> None:
    """Give a new study the paper's four questions (Table 5); staff may edit them later."""
    Question.objects.bulk_create(
        [Question(study=study, key=k, label=label, text=text, order=i) for i, (k, label, text) in enumerate(DEFAULT_QUESTIONS)]
    )


_ITEM_CONTENT = ("persona", "history", "generic_response", "baseline_response", "challenger_response", "kind", "gold_answers")


@transaction.atomic
def study_import_jsonl(
    *, path: str | Path, slug: str, baseline: str, challenger: str, overlap: int = 3, seed: int = 0,
    trap_rate: float = 0.0,
) -> tuple[Study, int]:
    """Create a study from a JSONL file (one item a line); return it and its number of items.

    Every line is checked before anything is written. Importing the same file again changes
    nothing; new lines are added; a line whose item differs from the stored one is refused.
    """
    if baseline == challenger:
        raise StudyFileError("baseline and challenger must be different systems")
    if overlap < 1:
        raise StudyFileError("overlap must be at least 1")
    rows = study_file_read(path=path, baseline=baseline, challenger=challenger)
    study = Study.objects.select_for_update().filter(slug=slug).first()
    if study is None:
        study = study_create(
            slug=slug, baseline_name=baseline, challenger_name=challenger, overlap=overlap, seed=seed, trap_rate=trap_rate,
            meta={"source": str(path)},
        )
    elif (study.baseline_name, study.challenger_name) != (baseline, challenger):
        raise StudyFileError(
            f"study {slug!r} compares {study.baseline_name!r} with {study.challenger_name!r}, not {baseline!r} with "
            f"{challenger!r}; choose another --slug"
        )
    study_items_add(study=study, rows=rows)
    return study, study.items.filter(kind__in=RATED_KINDS).count()


def study_items_add(*, study: Study, rows: list[tuple[str, dict[str, Any]]]) -> int:
    """Add checked items (``(where, fields)`` pairs) to a study; return how many were new.

    An item already there with the same content is left alone (re-importing changes nothing);
    one with the same key and different content is refused, since ratings may refer to it.
    """
    existing = {key_normalise(item.key): item for item in study.items.all()}
    new = []
    for where, row in rows:
        old = existing.get(row["key"])
        if old is None:
            new.append(Item(study=study, **row))
        elif any(getattr(old, f) != row[f] for f in _ITEM_CONTENT):
            raise StudyFileError(
                f"{where}: item {row['key']!r} differs from the one already in study {study.slug!r}; "
                "items of a study cannot change once imported (use a new slug)"
            )
    Item.objects.bulk_create(new)
    if new:
        study_traps_create(study=study)
    return len(new)


# The numeric settings whose bounds live on the Study model's fields (annotation/models.py).
STUDY_BOUNDED_SETTINGS = ("overlap", "min_confidence", "reservation_minutes", "too_fast_seconds", "trap_rate")


def _study_settings_check(**fields: Any) -> None:
    """Refuse settings that would make a study unusable (no rater per item, a trap rate of 1, a
    reservation so long its expiry overflows): runs the Study model fields' own validators, so the
    bounds are stated once, on the model. Raises StudyFieldError naming the field."""
    for name in STUDY_BOUNDED_SETTINGS:
        if name not in fields:
            continue
        field = Study._meta.get_field(name)
        value = fields[name]
        try:
            if isinstance(value, bool):  # True is an int to Python, not a setting
                raise ValidationError("Enter a number.")
            field.run_validators(field.to_python(value))
        except ValidationError as exc:
            raise StudyFieldError(name, f"{name} {value!r}: {' '.join(exc.messages)}") from None


def study_create(
    *, slug: str, baseline_name: str, challenger_name: str, overlap: int = 3, seed: int = 0, trap_rate: float = 0.0,
    title: str = "", meta: dict | None = None, **fields: Any,
) -> Study:
    """Create an empty study with the paper's four questions.

    Raises StudyFieldError for a setting out of its bounds or a slug or title that names either
    system, a linked system's model or run, or a method (``study_names_check``; annotators see both).
    """
    _study_settings_check(overlap=overlap, trap_rate=trap_rate, **fields)
    study_names_check(texts={"slug": slug, "title": title}, words=study_own_words(
        baseline_name=baseline_name, challenger_name=challenger_name,
        systems=[fields.get("baseline_system"), fields.get("challenger_system")],
    ))
    study = Study.objects.create(
        slug=slug, title=title or slug, baseline_name=baseline_name, challenger_name=challenger_name,
        overlap=overlap, seed=seed, trap_rate=trap_rate, meta=meta or {}, **fields,
    )
    study_questions_create(study=study)
    return study


# Method names that are also everyday words ("a generic reply", "the reference") are not looked for.
_ORDINARY_METHOD_WORDS = ("generic", "reference", "external")


def study_neutral_slug(*parts: Any) -> str:
    """A slug that names nothing annotators could recognise: ``study-`` and 8 hex digits of a
    hash of ``parts`` (the same parts give the same slug, so a pipeline can fix it up front)."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()
    return f"study-{digest[:8]}"


def study_system_words(*, systems: list[Any] = (), names: list[str] = ()) -> list[str]:
    """Words an annotator-facing study text must not contain: the systems' names, backbones and
    run folders, ``names``, and every method's value and label (``postgrag``, ``PreSFT(Hist)``)."""
    words = list(names) + ["GRAG"]
    for system in systems:
        words += [system.name, system.backbone, (system.checkpoint_dir or "").rstrip("/").rsplit("/", 1)[-1]]
    for method in System.Method:
        if method.value not in _ORDINARY_METHOD_WORDS:
            words += [method.value, method.label]
    return [w for w in words if w]


def study_own_words(*, baseline_name: str, challenger_name: str, systems: list[Any] = ()) -> list[str]:
    """``study_system_words`` for one study: its baseline and challenger names, its linked systems
    (None where not linked) and every method; what its slug and title must not contain."""
    return study_system_words(systems=[s for s in systems if s is not None], names=[baseline_name, challenger_name])


def study_names_check(*, texts: dict[str, str], words: list[str]) -> None:
    """Refuse a study slug or title that names a system, method or model (annotators see both).

    ``texts`` maps a field name to its text; ``words`` come from ``study_system_words``. Raises
    ``ValueError`` naming the field and the word, e.g. ``slug 'spc-postgrag-vs-x' names 'postgrag'``.
    """


    for field, text in texts.items():
        # Slugs join words with - and _: read them as spaces so "presft-hist" is found like "presft_hist".
        found = [g.match for g in text_giveaways(text or "", names=words) if g.rule in ("system_name", "model_name")]
        found += [
            g.match for g in text_giveaways(re.sub(r"[-_]+", " ", text or ""), names=[re.sub(r"[-_]+", " ", w) for w in words])
            if g.rule in ("system_name", "model_name")
        ]
        if found:
            raise StudyFieldError(
                field, f"{field} {text!r} names {found[0]!r}, which annotators would see; leave it out to get a neutral one"
            )


@transaction.atomic
def study_judge_only_get_or_create(*, slug: str, baseline, challenger, split: str = "test", limit: int | None = None,
                                   seed: int = 0) -> Study:
    """The study an LLM judge rates two systems on, beyond any human study (the paper's LLM-2000, section 5.5).

    The first call creates it with ``study_create_from_systems`` and closes it to annotators; later calls
    return it. Raises ValueError when SLUG exists comparing other systems, or for any reason
    ``study_create_from_systems`` refuses.
    """
    study = Study.objects.filter(slug=slug).first()
    if study is not None:
        if (study.baseline_system_id, study.challenger_system_id) != (baseline.pk, challenger.pk):
            raise ValueError(
                f"Study {study.slug!r} exists and compares {study.baseline_name!r} with {study.challenger_name!r}, "
                f"not {baseline.name!r} with {challenger.name!r}; choose another slug."
            )
        return study
    with transaction.atomic():
        study = study_create_from_systems(slug=slug, baseline=baseline, challenger=challenger, split=split,
                                          limit=limit, seed=seed)
        study.is_open = False  # judge-only: no annotator is given it
        study.save(update_fields=["is_open"])
    return study


def study_create_from_systems(
    *, slug: str | None = None, baseline, challenger, split: str = "test", limit: int | None = None, overlap: int = 3,
    seed: int = 0, trap_rate: float = 0.0, title: str = "",
) -> Study:
    """Create a study from the stored responses of two systems on the samples both answered.

    With ``limit``, a seeded random subset of that size is taken (the paper rates 145 SPC test
    turns, section 5.5). The slug and title are neutral: without ``slug`` it is
    ``study_neutral_slug`` of the systems, split, limit and seed, and a given slug or title that
    names a system, method or model is refused (``ValueError``). The study stays closed
    (``is_open`` False) while its giveaway or degenerate-response checks flag anything; staff
    open it after review. ``meta["check"]`` holds the counts (``annotation.giveaways``).
    """


    if baseline.pk == challenger.pk:
        raise ValueError("baseline and challenger must be different systems")
    slug = slug or study_neutral_slug(baseline.pk, challenger.pk, split, limit, seed)
    study_names_check(texts={"slug": slug, "title": title}, words=study_system_words(systems=[baseline, challenger]))
    if Study.objects.filter(slug=slug).exists():
        raise ValueError(f"a study with slug {slug!r} already exists")
    base = {r.sample_id: r.text for r in Response.objects.filter(system=baseline, sample__split=split)}
    chal = {r.sample_id: r.text for r in Response.objects.filter(system=challenger, sample__split=split)}
    common = sorted(set(base) & set(chal))
    if not common:
        raise ValueError(f"{baseline.name} and {challenger.name} have no responses to the same {split!r} samples")
    if limit is not None and limit < len(common):
        common = sorted(random.Random(seed).sample(common, limit))

    study = study_create(
        slug=slug, title=title, baseline_name=baseline.name, challenger_name=challenger.name, overlap=overlap, seed=seed,
        trap_rate=trap_rate, baseline_system=baseline, challenger_system=challenger,
        meta={"split": split, "limit": limit},
    )
    Item.objects.bulk_create(
        [
            Item(
                study=study, key=key_normalise(s.key), sample=s, persona=s.agent_persona, history=s.history,
                generic_response=s.generic_response, baseline_response=base[s.pk], challenger_response=chal[s.pk],
            )
            for s in Sample.objects.filter(pk__in=common).order_by("key")
        ]
    )
    study_traps_create(study=study)
    flagged = study_check_flagged(study=study)
    study.is_open = not any(flagged.values())
    study.meta["check"] = flagged
    study.save(update_fields=["is_open", "meta"])
    return study


def study_traps_create(*, study: Study) -> int:
    """Add quality-control items at ``study.trap_rate``: identical pairs and repeated pairs.

    An identical pair's right answer is "Similar"; a repeated pair is shown to an annotator who
    rated the original, with the sides swapped, to measure consistency. Both are ordinary items
    to the annotator (same fields, opaque ids) and are kept out of the aggregate. Returns how
    many were added.
    """
    if study.trap_rate <= 0:
        return 0
    normal = list(study.items.filter(kind=Item.Kind.NORMAL).order_by("key"))
    have = set(study.items.exclude(kind__in=[Item.Kind.NORMAL, Item.Kind.GOLD]).values_list("key", flat=True))
    per_kind = max(1, math.ceil(study.trap_rate * len(normal) / 2))
    rng = random.Random(f"{study.seed}:traps")
    picks = rng.sample(normal, min(len(normal), per_kind * 2))
    traps = []
    for i, item in enumerate(picks):
        if i % 2 == 0:
            key = f"trap-identical:{item.key}"[:300]
            # Which system's text is doubled is seeded, so it says nothing about either side.
            text = item.baseline_response if rng.random() < 0.5 else item.challenger_response
            fields = {"kind": Item.Kind.TRAP_IDENTICAL, "baseline_response": text, "challenger_response": text,
                      "gold_answers": {q: "similar" for q in study.questions.values_list("key", flat=True)}}
        else:
            key = f"trap-repeat:{item.key}"[:300]
            fields = {"kind": Item.Kind.TRAP_REPEAT, "repeat_of": item, "baseline_response": item.baseline_response,
                      "challenger_response": item.challenger_response}
        if key in have:
            continue
        traps.append(Item(study=study, key=key, sample=item.sample, persona=item.persona, history=item.history,
                          generic_response=item.generic_response, **fields))
    Item.objects.bulk_create(traps)
    return len(traps)


STUDY_EDITABLE = (
    "title", "overlap", "min_confidence", "instructions", "reservation_minutes", "too_fast_seconds", "trap_rate", "is_open",
)


@transaction.atomic
def study_update(*, study: Study, questions: list[dict[str, str]] | None = None, **fields: Any) -> Study:
    """Change a study's settings, instructions (markdown) or questions.

    Changed instructions bump ``instructions_version`` so annotators see them again. Questions
    are matched by key: existing ones get the new label and text, new keys are added, and a
    question left out is removed only while nobody has answered it.
    """
    unknown = set(fields) - set(STUDY_EDITABLE)
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))} (editable: {', '.join(STUDY_EDITABLE)})")
    _study_settings_check(**fields)
    if "title" in fields:
        study_names_check(texts={"title": fields["title"]}, words=study_own_words(
            baseline_name=study.baseline_name, challenger_name=study.challenger_name,
            systems=[study.baseline_system, study.challenger_system],
        ))
    if "instructions" in fields and fields["instructions"] != study.instructions:
        study.instructions_version += 1
    for name, value in fields.items():
        setattr(study, name, value)
    study.save()
    if questions is not None:
        keys = []
        for i, q in enumerate(questions):
            key, text = str(q.get("key", "")).strip(), str(q.get("text", "")).strip()
            if not key or not text:
                raise ValueError(f"questions[{i}]: a question needs a key and a text")
            if key in keys:
                raise ValueError(f"questions[{i}]: key {key!r} used twice")
            keys.append(key)
            Question.objects.update_or_create(
                study=study, key=key, defaults={"label": str(q.get("label") or key), "text": text, "order": i}
            )
        dropped = study.questions.exclude(key__in=keys)
        answered = Rating.objects.filter(item__study=study, question__in=dropped.values("key")).values_list(
            "question", flat=True
        ).distinct()
        if answered:
            raise ValueError(f"questions {', '.join(sorted(answered))} have ratings and cannot be removed")
        dropped.delete()
    if "trap_rate" in fields:
        study_traps_create(study=study)
    return study


def study_create_with_items(*, items: list[Any], **fields: Any) -> tuple[Study, int]:
    """Create a study from item objects in the study-file format (the staff API's create)."""
    baseline, challenger = fields.get("baseline_name"), fields.get("challenger_name")
    if not baseline or not challenger or baseline == challenger:
        raise StudyFileError("baseline_name and challenger_name must be two different system names")
    rows, seen = [], set()
    for i, obj in enumerate(items):
        row = item_row_parse(obj, where=f"items[{i}]", baseline=baseline, challenger=challenger)
        if row["key"] in seen:
            raise StudyFileError(f"items[{i}]: key {row['key']!r} used twice")
        seen.add(row["key"])
        rows.append((f"items[{i}]", row))
    with transaction.atomic():
        study = study_create(**fields)
        study_items_add(study=study, rows=rows)
    return study, len(rows)
