"""Operations that change annotation data: studies, annotators, assignment and ratings.

The human evaluation of the GRAG paper (section 5.5, Table 5): each item pairs a baseline's and
a challenger's response for one sample; ``overlap`` annotators (three in the paper) answer four
questions with "A better" / "B better" / "Similar" and a confidence from 1 to 5. What the
annotator saw (A/B/S, the side the baseline was on) is stored next to the canonical answer
(baseline / challenger / similar), so blinding and position bias can be audited later.

Concurrency: on PostgreSQL, ``assignment_next`` locks candidate item rows with
``SELECT ... FOR UPDATE SKIP LOCKED`` and re-counts their live assignments after taking the
lock, so two annotators asking at once never push an item past its overlap; the database's
unique constraints (one assignment per item and annotator, one current rating per item,
question and rater) back the code up.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from .keys import key_normalise
from .models import DEFAULT_QUESTIONS, Assignment, Item, Question, Rating, Study
from .selectors import live_sql, sql_params

User = get_user_model()

CHOICES_SHOWN = ("A", "B", "S")
# Lines longer than this in a study file are refused: no real item is that long, and reading one
# would only exhaust memory.
MAX_LINE_BYTES = 1_000_000
# Candidate items locked per request: a few, so that one skipped by the side-balance rule
# still leaves a choice, but not so many that concurrent annotators starve each other.
CANDIDATES_LOCKED = 4


@dataclass(frozen=True)
class Answer:
    """One answer as the annotator gave it: the question key, A / B / S as shown, confidence 1-5."""

    question: str
    choice: str
    confidence: int


class RatingInvalid(ValueError):
    """Answers that cannot be stored; ``errors`` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class ReservationLost(RatingInvalid):
    """The annotator's reservation expired and the item went to someone else meanwhile."""


class StudyFileError(ValueError):
    """A study file that cannot be imported; the message names the file and line."""


# --------------------------------------------------------------------------- studies


def study_questions_create(*, study: Study) -> None:
    """Give a new study the paper's four questions (Table 5); staff may edit them later."""
    Question.objects.bulk_create(
        [Question(study=study, key=k, label=label, text=text, order=i) for i, (k, label, text) in enumerate(DEFAULT_QUESTIONS)]
    )


def _history_normalise(history: Any, where: str) -> list[dict[str, str]]:
    """Turns as [{"role": "user"|"agent", "text"}]; a plain string becomes turns by its prefixes."""
    if isinstance(history, str):
        turns = []
        for line in history.splitlines():
            line = line.strip()
            if not line:
                continue
            role, sep, text = line.partition(":")
            if sep and role.strip().lower() in ("user", "agent"):
                turns.append({"role": role.strip().lower(), "text": text.strip()})
            elif turns:
                turns[-1]["text"] += "\n" + line
            else:
                turns.append({"role": "user", "text": line})
        return turns
    if not isinstance(history, list):
        raise StudyFileError(f"{where}: \"history\" must be a list of turns or a string, not {type(history).__name__}")
    turns = []
    for i, turn in enumerate(history):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "agent") or not isinstance(turn.get("text"), str):
            raise StudyFileError(
                f"{where}: history[{i}] must be {{\"role\": \"user\"|\"agent\", \"text\": \"...\"}}, got {json.dumps(turn)[:200]}"
            )
        turns.append({"role": turn["role"], "text": turn["text"]})
    return turns


def item_row_parse(obj: Any, *, where: str, baseline: str, challenger: str) -> dict[str, Any]:
    """Check one study item (a JSONL line or an API object) and return Item fields; raise StudyFileError."""
    if not isinstance(obj, dict):
        raise StudyFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    key = obj.get("key")
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str) or not key.strip():
        raise StudyFileError(f"{where}: \"key\" is missing or not a non-empty string")
    key = key_normalise(key)
    if len(key) > 300:
        raise StudyFileError(f"{where}: \"key\" is longer than 300 characters")
    persona = obj.get("persona", "")
    if isinstance(persona, list) and all(isinstance(p, str) for p in persona):
        persona = "\n".join(persona)
    if not isinstance(persona, str):
        raise StudyFileError(f"{where}: \"persona\" must be a string or a list of strings")
    history = _history_normalise(obj.get("history", []), where)
    generic = obj.get("generic_response") or ""
    if not isinstance(generic, str):
        raise StudyFileError(f"{where}: \"generic_response\" must be a string (may be empty)")
    responses = obj.get("responses")
    if not isinstance(responses, dict):
        raise StudyFileError(f"{where}: \"responses\" must be an object {{\"<system>\": \"<text>\"}}")
    for name in (baseline, challenger):
        # An empty or whitespace-only response is a response (real systems produce them): it is
        # kept, shown as "(empty response)" and listed by the study check. Only a missing system
        # or a value that is not text is an error, each with its own message.
        if name not in responses:
            have = ", ".join(repr(str(n)) for n in sorted(map(str, responses))) or "none"
            raise StudyFileError(f"{where}: \"responses\" has no entry for system {name!r} (it has: {have})")
        if not isinstance(responses[name], str):
            raise StudyFileError(
                f"{where}: the response of system {name!r} must be a string (it may be empty), "
                f"not {type(responses[name]).__name__}"
            )
    gold = obj.get("gold") or {}
    if not isinstance(gold, dict):
        raise StudyFileError(f"{where}: \"gold\" must be an object {{\"q1\": \"<system>\"|\"similar\"}}")
    gold_answers = {}
    for q, answer in gold.items():
        canonical = {baseline: "baseline", challenger: "challenger", "similar": "similar"}.get(answer)
        if canonical is None:
            raise StudyFileError(f"{where}: gold answer for {q!r} must be {baseline!r}, {challenger!r} or 'similar'")
        gold_answers[str(q)] = canonical
    return {
        "key": key, "persona": persona, "history": history, "generic_response": generic,
        "baseline_response": responses[baseline], "challenger_response": responses[challenger],
        "kind": Item.Kind.GOLD if gold_answers else Item.Kind.NORMAL, "gold_answers": gold_answers,
    }


def _study_file_read(*, path: str | Path, baseline: str, challenger: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse and check every line of a study file before anything is written."""
    path = Path(path)
    if not path.is_file():
        raise StudyFileError(f"{path}: no such file")
    rows, seen = [], {}
    with path.open("rb") as fh:
        lineno = 0
        # readline with a limit: a runaway line is refused without reading it whole.
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            where = f"{path}:{lineno}"
            if len(raw) > MAX_LINE_BYTES:
                raise StudyFileError(f"{where}: line is longer than {MAX_LINE_BYTES} bytes")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StudyFileError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8") from exc
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise StudyFileError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
            row = item_row_parse(obj, where=where, baseline=baseline, challenger=challenger)
            if row["key"] in seen:
                raise StudyFileError(f"{where}: key {row['key']!r} already used on line {seen[row['key']]}")
            seen[row["key"]] = lineno
            rows.append((where, row))
    if not rows:
        raise StudyFileError(f"{path}: no items (the file is empty)")
    return rows


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
    rows = _study_file_read(path=path, baseline=baseline, challenger=challenger)
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
    return study, study.items.filter(kind__in=[Item.Kind.NORMAL, Item.Kind.GOLD]).count()


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


def _study_settings_check(**fields: Any) -> None:
    """Refuse settings that would make a study unusable (no rater per item, a trap rate of 1)."""
    checks = {
        "overlap": (lambda v: int(v) >= 1, "overlap must be at least 1"),
        "trap_rate": (lambda v: 0 <= float(v) < 1, "trap_rate must be at least 0 and below 1"),
        "min_confidence": (lambda v: 1 <= int(v) <= 5, "min_confidence must be from 1 to 5"),
        "reservation_minutes": (lambda v: int(v) >= 1, "reservation_minutes must be at least 1"),
    }
    for name, (ok, message) in checks.items():
        if name in fields and not ok(fields[name]):
            raise ValueError(message)


def study_create(
    *, slug: str, baseline_name: str, challenger_name: str, overlap: int = 3, seed: int = 0, trap_rate: float = 0.0,
    title: str = "", meta: dict | None = None, **fields: Any,
) -> Study:
    """Create an empty study with the paper's four questions."""
    _study_settings_check(overlap=overlap, trap_rate=trap_rate, **fields)
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
    from modeling.models import System

    words = list(names) + ["GRAG"]
    for system in systems:
        words += [system.name, system.backbone, (system.checkpoint_dir or "").rstrip("/").rsplit("/", 1)[-1]]
    for method in System.Method:
        if method.value not in _ORDINARY_METHOD_WORDS:
            words += [method.value, method.label]
    return [w for w in words if w]


def study_names_check(*, texts: dict[str, str], words: list[str]) -> None:
    """Refuse a study slug or title that names a system, method or model (annotators see both).

    ``texts`` maps a field name to its text; ``words`` come from ``study_system_words``. Raises
    ``ValueError`` naming the field and the word, e.g. ``slug 'spc-postgrag-vs-x' names 'postgrag'``.
    """
    from .giveaways import text_giveaways

    for field, text in texts.items():
        # Slugs join words with - and _: read them as spaces so "presft-hist" is found like "presft_hist".
        found = [g.match for g in text_giveaways(text or "", names=words) if g.rule in ("system_name", "model_name")]
        found += [
            g.match for g in text_giveaways(re.sub(r"[-_]+", " ", text or ""), names=[re.sub(r"[-_]+", " ", w) for w in words])
            if g.rule in ("system_name", "model_name")
        ]
        if found:
            raise ValueError(
                f"{field} {text!r} names {found[0]!r}, which annotators would see; leave it out to get a neutral one"
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
    from modeling.models import Response

    from .giveaways import study_check_flagged

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
    from modeling.models import Sample

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


# --------------------------------------------------------------------------- annotators


class AccountRefused(ValueError):
    """A change to an account that the rules forbid, or a password the validators refuse.

    ``field`` names the input at fault ("username" or "password") for forms and the API.
    """

    def __init__(self, message: str, *, field: str = "username"):
        self.field = field
        super().__init__(message)


def password_validate(*, password: str, user) -> None:
    """Run Django's ``AUTH_PASSWORD_VALIDATORS`` on ``password`` for ``user`` (saved or not).

    Raises AccountRefused with the validators' own messages ("This password is too short. ...").
    """
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    if not isinstance(password, str) or not password:
        raise AccountRefused("password must not be empty", field="password")
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise AccountRefused(" ".join(exc.messages), field="password") from exc


@transaction.atomic
def account_password_set(*, user, password: str, actor) -> None:
    """Set ``user``'s password: only the account's owner or a superuser may, and it must pass the validators.

    ``actor`` is the user asking (None: nobody, refused). Raises AccountRefused. Saving the new
    password revokes the user's API tokens (``annotation.signals``).
    """
    if actor is None or not (actor.pk == user.pk or actor.is_superuser):
        raise AccountRefused(
            f"only {user.get_username()!r} or a superuser may change this account's password"
        )
    password_validate(password=password, user=user)
    user.set_password(password)
    user.save(update_fields=["password"])


@transaction.atomic
def annotator_add(*, username: str, password: str | None, study: Study | None) -> User:
    """Create an annotator account, or take an existing non-staff one, and give them ``study``.

    The one home of the account rule for staff (API, staff page, ``add_annotator``): they may
    create annotator accounts (a plain user; its password must pass ``AUTH_PASSWORD_VALIDATORS``,
    or with ``password=None`` it gets no usable password) and add existing non-staff accounts to
    a study, but never change an existing account's credentials or privileges: a password for
    an existing username, or a staff or superuser account, is refused with AccountRefused (a
    ValueError). Passwords are changed by their owner or a superuser (``account_password_set``,
    the admin, ``manage.py changepassword``).
    """
    username = (username or "").strip()
    if not username:
        raise AccountRefused("username must not be empty")
    if len(username) > 150:
        raise AccountRefused("username must be at most 150 characters")
    # Locked: two staff adding the same new name at once must not both create it.
    user = User.objects.select_for_update().filter(username=username).first()
    if user is not None:
        if user.is_staff or user.is_superuser:
            raise AccountRefused(
                f"{username!r} is a staff account; only plain accounts can be made annotators here"
            )
        if password:
            raise AccountRefused(
                f"{username!r} already has an account: leave the password empty to add it to the study; "
                "only its owner or a superuser can change its password",
                field="password",
            )
    else:
        user = User(username=username)
        if password is None:
            user.set_unusable_password()
        else:
            password_validate(password=password, user=user)
            user.set_password(password)
        user.save()
    if study is not None:
        study.annotators.add(user)
    return user


# --------------------------------------------------------------------------- assignment


def _live_q(now, prefix: str = "") -> Q:
    """Assignments that hold a slot of their item: completed, or reserved and not yet expired."""
    return Q(**{f"{prefix}status": Assignment.Status.COMPLETED}) | Q(
        **{f"{prefix}status": Assignment.Status.RESERVED, f"{prefix}expires_at__gt": now}
    )


# How far an annotator's count of baseline-as-A may drift from their count of baseline-as-B, at
# any point of a study. Within the bound each side is a coin flip, so the next side cannot be
# told from the earlier ones; only at the bound is it forced back. A bound of 1 (the old rule)
# forced every second side: item 2k was always opposite item 2k-1 (issue 17, finding 6). With
# bound B a random walk sits at the bound about 1/(2B) of the time, so the share of items on
# the same side as the previous one is about 0.5 - 1/(4B): 0.47 at B = 8, nearer 0.5 for the
# first items of a study; and a left-side preference of the annotator moves their balance by
# at most B items.
SIDE_BALANCE_BOUND = 8


def _seeded_side(study: Study, annotator_id: int, item_id: int) -> str:
    digest = hashlib.sha256(f"{study.seed}:{annotator_id}:{item_id}".encode()).digest()
    return "A" if digest[0] % 2 == 0 else "B"


def _side_within_bound(mine: dict[str, int], side: str) -> bool:
    """Whether showing the baseline on ``side`` keeps the annotator within ``SIDE_BALANCE_BOUND``."""
    after = mine["A"] - mine["B"] + (1 if side == "A" else -1)
    return abs(after) <= SIDE_BALANCE_BOUND


def _side_choose(*, study: Study, annotator, item: Item, mine: dict[str, int], others: list[str]) -> str:
    """The side the baseline is shown on for (annotator, item).

    Rules, in order: keep the annotator's own count of baseline-as-A within
    ``SIDE_BALANCE_BOUND`` of their baseline-as-B (so a human's left-side preference cannot
    masquerade as a system preference); then give the item the order its other raters saw less
    (so its raters see both orders); then a seeded coin. Neither of the last two depends on the
    annotator's earlier sides, so inside the bound their next side is as good as random.
    """
    for forced in ("A", "B"):
        if not _side_within_bound(mine, "B" if forced == "A" else "A"):
            return forced
    if others.count("A") != others.count("B"):
        return "A" if others.count("A") < others.count("B") else "B"
    return _seeded_side(study, annotator.pk, item.pk)


def _trap_due(*, study: Study, done_kinds: list[str]) -> bool:
    """Whether the annotator's next item should be a quality-control item (rate ``study.trap_rate``).

    Spread evenly: the k-th trap comes once k / (items + 1) reaches the rate, so a session
    never opens with one and they are not bunched.
    """
    if study.trap_rate <= 0:
        return False
    traps = sum(kind in (Item.Kind.TRAP_IDENTICAL, Item.Kind.TRAP_REPEAT) for kind in done_kinds)
    return traps < math.floor(study.trap_rate * (len(done_kinds) + 1))


def _trap_candidates(*, study: Study, annotator, now):
    """Quality-control items the annotator holds no live assignment of (no overlap limit)."""
    mine = Assignment.objects.filter(item=OuterRef("pk"), annotator=annotator).filter(_live_q(now))
    # A repeated pair only makes sense to someone who rated the original.
    rated = Assignment.objects.filter(annotator=annotator, status=Assignment.Status.COMPLETED).values("item_id")
    return Item.objects.filter(study=study).exclude(Exists(mine)).filter(
        Q(kind=Item.Kind.TRAP_IDENTICAL) | Q(kind=Item.Kind.TRAP_REPEAT, repeat_of_id__in=rated)
    ).order_by("public_id")


# Rated items (normal, gold) the annotator holds no live assignment of, with fewer than
# ``overlap`` live assignments, in one fixed (random, since public ids are) order: everybody works
# on the earliest open items, so items get completed one after the other, and the database reads
# only as far as it needs, not every item's count. SQL, not the ORM: this runs on every ``next``
# and building the equivalent queryset cost 4 ms of CPU a request (the annotator-load target is
# p95 < 100 ms with 50 annotators on 2 cores).
_OPEN_ITEMS_SQL = """
SELECT i.* FROM {item} i
WHERE i.study_id = %(study)s AND i.kind IN (%(normal)s, %(gold)s)
  AND NOT EXISTS (SELECT 1 FROM {assignment} m WHERE m.item_id = i.id AND m.annotator_id = %(me)s AND {live_m})
  AND (SELECT COUNT(*) FROM {assignment} a WHERE a.item_id = i.id AND {live_a}) < %(overlap)s
ORDER BY i.public_id
LIMIT %(limit)s {{lock}}
""".format(item=Item._meta.db_table, assignment=Assignment._meta.db_table, live_m=live_sql("m"), live_a=live_sql("a"))
# FOR NO KEY UPDATE: excludes other reservers of the row but not the key-share locks that
# inserting ratings and assignments (foreign keys to the item) take; FOR UPDATE would make every
# submit wait for, and be skipped by, concurrent reservations.
_LOCKS = {"skip": "FOR NO KEY UPDATE OF i SKIP LOCKED", "wait": "FOR NO KEY UPDATE OF i", "none": ""}


def _open_items(*, study: Study, annotator, now, limit: int, lock: str) -> list[Item]:
    """The first ``limit`` items open to the annotator, row-locked (``lock``: skip, wait or none)."""
    if not connection.features.has_select_for_update_skip_locked:
        lock = "none"  # SQLite locks the whole database for a write transaction; nothing to skip
    sql = _OPEN_ITEMS_SQL.format(lock=_LOCKS[lock])
    return list(Item.objects.raw(sql, sql_params(study=study, annotator=annotator, now=now, limit=limit)))


def _skip_locked(qs, *, limit: int) -> list:
    """The first ``limit`` rows of ``qs`` that no other transaction holds, locked (see ``_LOCKS``)."""
    if connection.features.has_select_for_update_skip_locked:
        return list(qs.select_for_update(skip_locked=True, of=("self",), no_key=True)[:limit])
    return list(qs[:limit])


def assignment_next(*, study: Study, annotator) -> Assignment | None:
    """Reserve the annotator's next item, or return their live reservation; None when nothing is left.

    The item is one they have not rated whose completed plus live reserved assignments are
    below the overlap. A reservation lasts ``study.reservation_minutes``; after that the slot
    goes back to the pool.
    """
    if not study.is_open:
        return None
    for _attempt in range(20):
        with transaction.atomic():
            assignment, retry = _assignment_next_once(study=study, annotator=annotator)
        if not retry:
            return assignment
    return None


def _repeat_side(item: Item, rows: list[tuple]) -> str:
    """A repeated pair is shown with the sides of the annotator's original swapped."""
    original = next(r for r in rows if r[1] == item.repeat_of_id)
    return "B" if original[3] == "A" else "A"


def _assignment_next_once(*, study: Study, annotator) -> tuple[Assignment | None, bool]:
    now = timezone.now()
    # One request at a time per annotator (a double click must not reserve two items).
    User.objects.select_for_update(no_key=True).filter(pk=annotator.pk).first()
    # All of the annotator's assignments in this study, in one query: their live reservation,
    # stale ones, the sides they saw so far and the kinds of items they rated.
    rows = list(
        Assignment.objects.filter(item__study=study, annotator=annotator)
        .values_list("pk", "item_id", "item__kind", "baseline_side", "status", "expires_at", "reserved_at")
    )
    live = [r for r in rows if r[4] == Assignment.Status.RESERVED and r[5] > now]
    if live:
        pk = max(live, key=lambda r: r[6])[0]
        return Assignment.objects.select_related("item").get(pk=pk), False
    stale = [r[0] for r in rows if r[4] == Assignment.Status.RESERVED]
    if stale:
        Assignment.objects.filter(pk__in=stale).update(status=Assignment.Status.EXPIRED)
    completed = [r for r in rows if r[4] == Assignment.Status.COMPLETED]
    mine = {"A": sum(r[3] == "A" for r in completed), "B": sum(r[3] == "B" for r in completed)}
    previous = {r[1]: r for r in rows}

    chosen, others = None, []
    for traps in ([True, False] if _trap_due(study=study, done_kinds=[r[2] for r in completed]) else [False]):
        if traps:
            locked = _skip_locked(_trap_candidates(study=study, annotator=annotator, now=now), limit=CANDIDATES_LOCKED)
        else:
            locked = _open_items(study=study, annotator=annotator, now=now, limit=CANDIDATES_LOCKED, lock="skip")
            if not locked and _open_items(study=study, annotator=annotator, now=now, limit=1, lock="none"):
                # Every open item is locked by someone else this instant: wait for one rather
                # than tell the annotator the study is done.
                locked = _open_items(study=study, annotator=annotator, now=now, limit=1, lock="wait")
        if not locked:
            continue
        # Re-count under the lock: the candidate query's snapshot may predate a commit.
        sides_by_item: dict[int, list[str]] = {item.pk: [] for item in locked}
        for item_id, side in (
            Assignment.objects.filter(_live_q(now), item__in=locked).exclude(annotator=annotator)
            .values_list("item_id", "baseline_side")
        ):
            sides_by_item[item_id].append(side)
        fallback = None
        for item in locked:
            sides = sides_by_item[item.pk]
            if item.kind not in (Item.Kind.TRAP_IDENTICAL, Item.Kind.TRAP_REPEAT) and len(sides) >= study.overlap:
                continue
            if item.kind == Item.Kind.TRAP_REPEAT:
                if not _side_within_bound(mine, _repeat_side(item, rows)):
                    continue  # its swapped order would break the balance bound: later
                chosen, others = item, sides
                break
            side = _side_choose(study=study, annotator=annotator, item=item, mine=mine, others=sides)
            if len(sides) == study.overlap - 1 and sides and all(s == side for s in sides):
                # This side would give all raters of the item the same order; prefer another item.
                fallback = fallback or (item, sides)
                continue
            chosen, others = item, sides
            break
        if chosen is None and fallback is not None:
            chosen, others = fallback
        if chosen is not None:
            break
    if chosen is None:
        retry = bool(_open_items(study=study, annotator=annotator, now=now, limit=1, lock="none"))
        return None, retry

    chosen.study = study  # the payload needs it; saves a query
    if chosen.kind == Item.Kind.TRAP_REPEAT:
        side = _repeat_side(chosen, rows)
    else:
        side = _side_choose(study=study, annotator=annotator, item=chosen, mine=mine, others=others)
    expires = now + timedelta(minutes=study.reservation_minutes)
    old = previous.get(chosen.pk)
    if old is not None:
        # An expired reservation of the same item comes back with the order it had: the
        # order is fixed per (annotator, item), never reshuffled on a reload.
        if _side_within_bound(mine, old[3]):
            side = old[3]
        Assignment.objects.filter(pk=old[0]).update(
            baseline_side=side, status=Assignment.Status.RESERVED, reserved_at=now, expires_at=expires,
            completed_at=None, seconds=None,
        )
        a = Assignment.objects.get(pk=old[0])
        a.item = chosen
        return a, False
    # The annotator's row lock above rules out a concurrent insert of the same (item, annotator).
    a = Assignment.objects.create(item=chosen, annotator=annotator, baseline_side=side, reserved_at=now, expires_at=expires)
    return a, False


# --------------------------------------------------------------------------- ratings


def _canonical(shown: str, baseline_side: str) -> str:
    if shown == "S":
        return Rating.Choice.SIMILAR
    return Rating.Choice.BASELINE if shown == baseline_side else Rating.Choice.CHALLENGER


def answers_validate(*, study: Study, answers: list[Answer]) -> list[Answer]:
    """Check that every question of the study is answered once with A/B/S and a confidence 1-5."""
    keys = list(study.questions.values_list("key", flat=True))
    errors: dict[str, str] = {}
    given: dict[str, Answer] = {}
    for a in answers:
        q = str(a.question)
        if q not in keys:
            errors[q or "question"] = f"no question {q!r} in this study (questions: {', '.join(keys)})"
        elif q in given:
            errors[q] = "answered twice"
        else:
            given[q] = a
    for q in keys:
        a = given.get(q)
        if a is None:
            errors.setdefault(q, "answer this question: choose A, B or Similar")
            continue
        if a.choice not in CHOICES_SHOWN:
            errors[q] = "choose A, B or Similar"
        conf = a.confidence
        if isinstance(conf, bool) or not isinstance(conf, int) or not 1 <= conf <= 5:
            errors[f"{q}.confidence"] = "give a confidence from 1 (not confident) to 5 (very confident)"
    if errors:
        raise RatingInvalid(errors)
    return [given[q] for q in keys]


RatingKey = tuple[int, str, str]  # (item id, question key, rater name): at most one current Rating each


def ratings_append(*, ratings: list[Rating], compare: tuple[str, ...],
                   current: dict[RatingKey, Rating] | None = None) -> list[Rating]:
    """The one write path of Rating rows: human submits, votes imports and judge runs all call it.

    Ratings are append-only (paper section 5.5's votes stay auditable): for each unsaved rating of
    ``ratings`` whose (item, question, rater) has a current row that equals it on every field of
    ``compare``, nothing is written and that row is returned with ``is_new = False``; otherwise the
    old row (if any) stops being current and the new one is inserted with ``is_new = True``.
    Returns the current rows, in the order of ``ratings``. ``current`` (key -> row) saves the look-up
    when the caller already holds it. Run inside the caller's transaction.
    """
    if current is None:
        current = ratings_current(keys=[(r.item_id, r.question, r.rater) for r in ratings])
    result, new, replaced = [], [], []
    for rating in ratings:
        old = current.get((rating.item_id, rating.question, rating.rater))
        if old is not None and all(getattr(old, f) == getattr(rating, f) for f in compare):
            old.is_new = False
            result.append(old)
            continue
        if old is not None:
            replaced.append(old.pk)
        rating.is_new = True
        new.append(rating)
        result.append(rating)
    if replaced:
        Rating.objects.filter(pk__in=replaced).update(is_current=False)
    Rating.objects.bulk_create(new)
    return result


def ratings_current(*, keys: list[RatingKey]) -> dict[RatingKey, Rating]:
    """The current Rating of each (item id, question, rater) in ``keys`` that has one."""
    if not keys:
        return {}
    rows = Rating.objects.filter(item_id__in={k[0] for k in keys}, rater__in={k[2] for k in keys}, is_current=True)
    wanted = set(keys)
    return {key: r for r in rows if (key := (r.item_id, r.question, r.rater)) in wanted}


def ratings_retire(*, keys: list[RatingKey]) -> int:
    """Stop the current Rating of each key being current (a judge verdict that became an abstention)."""
    ids = [r.pk for r in ratings_current(keys=keys).values()]
    return Rating.objects.filter(pk__in=ids).update(is_current=False) if ids else 0


@transaction.atomic
def rating_submit(*, assignment: Assignment, answers: list[Answer]) -> list[Rating]:
    """Store an annotator's answers to every question of an item; return the current ratings.

    All questions are required; on any error nothing is stored. Submitting the same answers
    again (a double click, a retry) stores nothing. Changing answers is allowed until the
    annotator moves on to another item: each changed answer adds a row and the old row stops
    being current, so every change is kept with its timestamp (append-only). Each returned
    rating's ``is_new`` says whether this call stored it.
    """
    locked = _assignment_lock(Assignment.objects.filter(pk=assignment.pk))
    if locked is None:
        raise Assignment.DoesNotExist(f"assignment {assignment.pk} is gone")
    return _rating_store(assignment=locked, answers=answers)


@transaction.atomic
def rating_submit_for_item(*, study: Study, annotator, public_id: str, answers: list[Answer]) -> tuple[Assignment, list[Rating]] | None:
    """``rating_submit`` for the annotator's assignment of the item with this opaque id; None if they have none.

    Finds and locks the assignment in one query: the API's submit is one of the two requests
    of the annotator-load target.
    """
    assignment = _assignment_lock(
        Assignment.objects.filter(item__study=study, item__public_id=public_id, annotator=annotator)
    )
    if assignment is None:
        return None
    return assignment, _rating_store(assignment=assignment, answers=answers)


def _assignment_lock(qs) -> Assignment | None:
    return qs.select_for_update(of=("self",), no_key=True).select_related("item__study", "annotator").first()


def _rating_store(*, assignment: Assignment, answers: list[Answer]) -> list[Rating]:
    """The body of ``rating_submit``, on an assignment locked by the caller's transaction."""
    item, study, annotator = assignment.item, assignment.item.study, assignment.annotator
    answers = answers_validate(study=study, answers=answers)
    now = timezone.now()
    current = {
        r.question: r for r in Rating.objects.filter(item=item, rater=annotator.get_username(), is_current=True)
    }

    if assignment.status == Assignment.Status.COMPLETED:
        unchanged = all(
            q.question in current
            and current[q.question].shown_choice == q.choice
            and current[q.question].confidence == q.confidence
            for q in answers
        )
        if unchanged:
            for r in current.values():
                r.is_new = False
            return [current[a.question] for a in answers]
        moved_on = Assignment.objects.filter(
            item__study=study, annotator=annotator, reserved_at__gt=assignment.reserved_at
        ).exclude(pk=assignment.pk).exists()
        if moved_on:
            raise RatingInvalid({"item": "this item is closed: answers can be changed only before moving to the next item"})
    else:
        if assignment.status == Assignment.Status.EXPIRED or assignment.expires_at <= now:
            # A late submit still counts if the slot is free; lock the item to decide.
            Item.objects.select_for_update(no_key=True).filter(pk=item.pk).first()
            taken = Assignment.objects.filter(_live_q(now), item=item).exclude(pk=assignment.pk).count()
            if item.kind in (Item.Kind.NORMAL, Item.Kind.GOLD) and taken >= study.overlap:
                raise ReservationLost(
                    {"item": "your reservation of this item expired and it went to another annotator; ask for the next item"}
                )
        assignment.status = Assignment.Status.COMPLETED
        assignment.completed_at = now
        assignment.seconds = (now - assignment.reserved_at).total_seconds()
        assignment.save(update_fields=["status", "completed_at", "seconds"])

    rater = annotator.get_username()
    ratings = [
        Rating(
            item=item, question=a.question, rater=rater, rater_kind=Rating.RaterKind.HUMAN,
            annotator=annotator, assignment=assignment, choice=_canonical(a.choice, assignment.baseline_side),
            shown_choice=a.choice, baseline_side=assignment.baseline_side, confidence=a.confidence,
        )
        for a in answers
    ]
    return ratings_append(ratings=ratings, compare=("shown_choice", "confidence"),
                          current={(item.pk, q, rater): r for q, r in current.items()})


# --------------------------------------------------------------------------- votes files

VOTE_COLUMNS = ("item_key", "rater", "rater_kind", "question", "choice", "confidence")


class VotesFileError(ValueError):
    """A votes file that cannot be imported; the message names the file and line."""


def _votes_cell(text: str) -> str:
    """A votes-file cell as the exporter meant it.

    A cell beginning with ``'`` was neutralised against formula injection by ``export_votes``
    (``common.csv_safe``): its one added quote is dropped and the rest kept exactly (a key may
    begin with a tab). Any other cell is stripped of surrounding blanks, as typed by hand.
    """
    from common.csv_safe import QUOTE, cell_restore

    return cell_restore(text) if text.startswith(QUOTE) else text.strip()


def _votes_read(*, study: Study, path: Path) -> list[tuple[int, dict[str, Any]]]:
    import csv
    import io

    if not path.is_file():
        raise VotesFileError(f"{path}: no such file")
    # Keys compare in their one normal form (annotation.keys): an exported file that an editor
    # re-saved with NFD accents or padded cells still finds its items.
    items = {key_normalise(key): pk for key, pk in study.items.values_list("key", "id")}
    questions = {key_normalise(q): q for q in study.questions.values_list("key", flat=True)}
    rows, seen = [], {}
    from modeling.importers.base import ImportFileError, read_text

    try:
        # The dataset importers' reader: UTF-8 check, NUL bytes and over-long lines, each named by line.
        text = read_text(path)
    except ImportFileError as exc:
        raise VotesFileError(str(exc)) from exc
    reader = None
    try:
        with io.StringIO(text, newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in VOTE_COLUMNS if c not in header]
            if missing:
                raise VotesFileError(
                    f"{path}:1: missing column(s) {', '.join(missing)}; the header must be {','.join(VOTE_COLUMNS)}"
                )
            for row in reader:
                line = reader.line_num
                where = f"{path}:{line}"
                if None in row or any(row.get(c) is None for c in VOTE_COLUMNS):
                    raise VotesFileError(f"{where}: expected {len(header)} columns, got a different number")
                key, rater = key_normalise(_votes_cell(row["item_key"])), _votes_cell(row["rater"])
                if key not in items:
                    raise VotesFileError(f"{where}: no item {key!r} in study {study.slug!r}")
                if not rater or len(rater) > 150:
                    raise VotesFileError(f"{where}: rater must be a name of 1 to 150 characters")
                kind = _votes_cell(row["rater_kind"])
                if kind not in Rating.RaterKind.values:
                    raise VotesFileError(f"{where}: rater_kind must be human or llm, not {kind!r}")
                question = questions.get(key_normalise(_votes_cell(row["question"])))
                if question is None:
                    raise VotesFileError(f"{where}: no question {row['question'].strip()!r} in study {study.slug!r}")
                choice = _votes_cell(row["choice"])
                if choice not in Rating.Choice.values:
                    raise VotesFileError(f"{where}: choice must be baseline, challenger or similar, not {choice!r}")
                try:
                    confidence = int(row["confidence"].strip())
                except ValueError:
                    raise VotesFileError(f"{where}: confidence must be a whole number from 1 to 5, not {row['confidence']!r}")
                if not 1 <= confidence <= 5:
                    raise VotesFileError(f"{where}: confidence must be from 1 to 5, not {confidence}")
                ident = (key, question, rater)
                if ident in seen:
                    raise VotesFileError(f"{where}: a second vote of {rater!r} on {key!r} {question} (first on line {seen[ident]})")
                seen[ident] = line
                rows.append((line, {"item_id": items[key], "rater": rater, "rater_kind": kind, "question": question,
                                    "choice": choice, "confidence": confidence}))
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 1
        raise VotesFileError(f"{path}:{line}: unreadable CSV ({exc})") from exc
    return rows


@transaction.atomic
def votes_import(*, study: Study, path: str | Path) -> dict[str, int]:
    """Load ratings collected elsewhere (columns ``VOTE_COLUMNS``); return counts added/changed/unchanged.

    The whole file is checked first; on any bad line nothing is written. A vote equal to the
    rater's current one is skipped (re-importing changes nothing); a different one is appended
    and becomes current, like a changed answer in the app.
    """
    rows = _votes_read(study=study, path=Path(path))
    current = {
        (r.item_id, r.question, r.rater): r
        for r in Rating.objects.filter(item__study=study, is_current=True)
    }
    users = dict(User.objects.filter(username__in={r["rater"] for _, r in rows}).values_list("username", "id"))
    ratings = [
        Rating(annotator_id=users.get(r["rater"]) if r["rater_kind"] == Rating.RaterKind.HUMAN else None,
               meta={"source": str(path)}, **r)
        for _line, r in rows
    ]
    stored = ratings_append(ratings=ratings, compare=("choice", "confidence", "rater_kind"), current=current)
    unchanged = sum(not r.is_new for r in stored)
    changed = sum(r.is_new and (r.item_id, r.question, r.rater) in current for r in stored)
    return {"added": len(stored) - unchanged - changed, "changed": changed, "unchanged": unchanged}
