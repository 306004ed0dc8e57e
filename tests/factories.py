"""The one set of test builders: study files, studies and their rows, annotators, systems with responses.

Plain functions rather than factory_boy: every builder is a few lines of the ORM or of the real
service, readable at the call site, and a test states the values its assertions depend on.

- Study FILES (what the import tests test) are built from ``study_line`` and written by
  ``jsonl_write``; ``study_imported`` goes through the real ``study_import_jsonl``.
- Study ROWS for tests that are not about the import: ``study_create`` (the paper's four
  questions, docs/annotation.md), ``items_create``, ``ratings_create`` (hand-worked rating tables),
  ``annotators_create`` and ``answer_all`` (through the real services); ``toy_study``, a small
  imported study for the tests of what happens after the import.
- Systems: ``samples_create`` (one conversation's samples) and ``systems_with_responses`` (a
  baseline and a challenger that answered the same samples, what ``study_create_from_systems`` reads).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User

from annotation import services
from annotation.models import DEFAULT_QUESTIONS, Item, Question, Rating, Study
from modeling.models import Conversation, Dataset, Response, Sample, System

BASELINE, CHALLENGER = "PreSFT(Hist)", "PostGRAG"  # the paper's usual pair (Table 3's baseline, challenger)
QKEYS = [key for key, _, _ in DEFAULT_QUESTIONS]
PASSWORD = "pw-12345678"  # passes AUTH_PASSWORD_VALIDATORS


# --------------------------------------------------------------------------- study files

def study_line(
    *, key: str, responses: dict[str, str], persona: str = "I have two cats.",
    history: list[dict] | str = ({"role": "user", "text": "What did you do today?"},), generic_response: str | None = None,
    **extra: Any,
) -> dict:
    """One line of a study JSONL file (docs/annotation.md): item key, persona, history, generic response R_G and
    one response per system name. ``generic_response`` None leaves the field out; ``extra`` adds any other field."""
    line = {"key": key, "persona": persona, "history": list(history) if not isinstance(history, str) else history}
    if generic_response is not None:
        line["generic_response"] = generic_response
    line["responses"] = dict(responses)
    return {**line, **extra}


def jsonl_write(path: Path, rows: Sequence[dict | str]) -> str:
    """Write ``rows`` as UTF-8 JSON lines (a str row is written as it is: a blank or broken line); returns the path."""
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n"
                            for row in rows), encoding="utf-8")
    return str(path)


def study_imported(path: Path, rows: Sequence[dict | str], *, slug: str, baseline: str = BASELINE,
                   challenger: str = CHALLENGER, **options: Any) -> tuple[Study, int]:
    """Write ``rows`` to ``path`` and import them with the real ``study_import_jsonl`` (overlap, seed, trap_rate...);
    returns what it returns: (study, items imported)."""
    return services.study_import_jsonl(path=jsonl_write(path, rows), slug=slug, baseline=baseline,
                                       challenger=challenger, **options)


def toy_study_lines(n: int, baseline: str = BASELINE, challenger: str = CHALLENGER) -> list[dict]:
    """``n`` lines keyed spc/test/0..n-1 whose responses differ by item, plus a third system "other"."""
    return [study_line(
        key=f"spc/test/{i}", persona=f"I have {i} dogs.\nI live in Ohio.",
        history=[{"role": "user", "text": f"How many pets do you have? ({i})"}], generic_response="I have some pets.",
        responses={baseline: f"base says {i}", challenger: f"chal says I have {i} dogs", "other": "x"},
    ) for i in range(n)]


def toy_study(tmp_path: Path, n: int = 6, overlap: int = 3, slug: str = "s", trap_rate: float = 0.0, seed: int = 0) -> Study:
    """A study of ``n`` toy_study_lines imported through the real service (baseline PreSFT(Hist), challenger PostGRAG)."""
    study, count = study_imported(tmp_path / f"{slug}.jsonl", toy_study_lines(n), slug=slug, overlap=overlap, seed=seed,
                                  trap_rate=trap_rate)
    assert count == n
    return study


# --------------------------------------------------------------------------- studies and their rows

def study_create(slug: str = "s", *, baseline_name: str = BASELINE, challenger_name: str = CHALLENGER, overlap: int = 3,
                 min_confidence: int = 2, seed: int = 0, **fields: Any) -> Study:
    """A Study row with the paper's four questions, written directly (no name check: tests choose the names)."""
    study = Study.objects.create(slug=slug, baseline_name=baseline_name, challenger_name=challenger_name,
                                 overlap=overlap, min_confidence=min_confidence, seed=seed, **fields)
    Question.objects.bulk_create([Question(study=study, key=key, label=label, text=text, order=order)
                                  for order, (key, label, text) in enumerate(DEFAULT_QUESTIONS)])
    return study


def items_create(study: Study, rows: Sequence[dict]) -> list[Item]:
    """One Item per dict of Item fields (``key`` and the responses at least), in order."""
    return [Item.objects.create(study=study, **row) for row in rows]


def ratings_create(study: Study, rows, *, kind: str = Item.Kind.NORMAL) -> None:
    """Ratings from a hand-worked table; items are created as needed (responses "b KEY" / "c KEY").

    rows: (item_key, rater, question, choice, confidence[, rater_kind]); rater_kind defaults to HUMAN.
    The baseline's side (A or B) is a fixed function of item and rater, so both sides occur.
    """
    keys = sorted({row[0] for row in rows})
    existing = {i.key: i for i in Item.objects.filter(study=study, key__in=keys)}
    new = [Item(study=study, key=k, baseline_response=f"b {k}", challenger_response=f"c {k}", kind=kind)
           for k in keys if k not in existing]
    Item.objects.bulk_create(new)
    items = {i.key: i for i in Item.objects.filter(study=study, key__in=keys)}
    Rating.objects.bulk_create([
        Rating(item=items[row[0]], rater=row[1], question=row[2], choice=row[3], confidence=row[4],
               rater_kind=row[5] if len(row) > 5 else Rating.RaterKind.HUMAN,
               baseline_side="A" if (hash(row[0]) + hash(row[1])) % 2 else "B")
        for row in rows
    ])


def annotators_create(study: Study, n: int, prefix: str = "ann", password: str = PASSWORD) -> list[User]:
    """``n`` annotator accounts ``prefix0``... given ``study``, through the real ``annotator_add``."""
    return [services.annotator_add(username=f"{prefix}{i}", password=password, study=study) for i in range(n)]


def answer_all(choice: str = "A", confidence: int = 4, **override: str) -> list[services.Answer]:
    """One Answer per question of the paper (q1-q4): ``choice`` unless ``override`` names the question."""
    return [services.Answer(q, override.get(q, choice), confidence) for q in QKEYS]


# --------------------------------------------------------------------------- systems with responses

def samples_create(rows: Sequence[dict], *, dataset: Dataset | None = None, split: str = "test",
                   source_id: str = "c1") -> list[Sample]:
    """One Sample per dict of Sample fields (``key`` at least), all in one conversation of ``dataset``
    (default: a new "spc" dataset); ``turn_index`` is the row's position unless given."""
    dataset = dataset or Dataset.objects.create(name="spc", kind=Dataset.Kind.SPC)
    conversation = Conversation.objects.create(dataset=dataset, split=split, source_id=source_id, turns=[])
    return [Sample.objects.create(**{"turn_index": i, **row}, dataset=dataset, conversation=conversation, split=split)
            for i, row in enumerate(rows)]


def systems_with_responses(samples: Sequence[Sample], texts: Sequence[tuple[str, str]], *, baseline: dict,
                           challenger: dict) -> tuple[System, System]:
    """A baseline and a challenger System (their fields in ``baseline`` / ``challenger``) that answered
    ``samples[i]`` with ``texts[i]`` = (baseline's text, challenger's text)."""
    base, chal = System.objects.create(**baseline), System.objects.create(**challenger)
    for sample, (b, c) in zip(samples, texts, strict=True):
        Response.objects.create(system=base, sample=sample, text=b)
        Response.objects.create(system=chal, sample=sample, text=c)
    return base, chal
