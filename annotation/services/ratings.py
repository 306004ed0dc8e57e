"""Ratings: validating answers and the one append-only write path of Rating rows."""


from django.db import connection, transaction
from django.utils import timezone

from common.text import text_as_typed

from ..models import (
    COMMENT_MAX_CHARS,
    CONFIDENCE_MAX,
    CONFIDENCE_MIN,
    Assignment,
    Item,
    Rating,
    Study,
    confidence_in_scale,
)
from ..selectors import study_questions
from .assignment import live_q
from .base import CHOICES_SHOWN, Answer, ItemConflict, RatingInvalid, ReservationLost, StudyClosed
from .closing import study_close_if_complete
from .enrolment import participant_may_act


def _canonical(shown: str, baseline_side: str) -> str:
    if shown == "S":
        return Rating.Choice.SIMILAR
    return Rating.Choice.BASELINE if shown == baseline_side else Rating.Choice.CHALLENGER


def answers_validate(*, study: Study, answers: list[Answer]) -> list[Answer]:
    """Check that every question of the study is answered once with A/B/S and a confidence 1-5."""
    keys = [q["key"] for q in study_questions(study=study)]
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
        if not confidence_in_scale(conf):
            errors[f"{q}.confidence"] = f"give a confidence from {CONFIDENCE_MIN} (not confident) to {CONFIDENCE_MAX} (very confident)"
    if errors:
        raise RatingInvalid(errors)
    return [given[q] for q in keys]


def comment_clean(text, *, field: str = "comment", required: bool = False) -> str:
    """An annotator's free text (a comment or a flag) as stored: ``common.text.text_as_typed``, at most
    ``COMMENT_MAX_CHARS``.

    Controls other than newline and tab and the bidi overrides are dropped; a text with nothing
    visible (only zero-width characters, marks or spaces) is empty, the rule display names follow
    too. The zero-width (non-)joiners of Persian, Indic scripts and emoji are kept. Raises
    RatingInvalid({field: reason}) for a non-string, a NUL character, an empty text when
    ``required``, or a text over the limit. HTML is kept as typed: every page escapes it and
    every CSV goes through ``common.csv_safe``.
    """
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise RatingInvalid({field: "must be text"})
    if "\x00" in text:
        raise RatingInvalid({field: "must not contain NUL characters"})
    text = text_as_typed(text.replace("\r\n", "\n"))
    if required and not text:
        raise RatingInvalid({field: "write what is wrong with this item"})
    if len(text) > COMMENT_MAX_CHARS:
        raise RatingInvalid({field: f"at most {COMMENT_MAX_CHARS} characters (this one has {len(text)})"})
    return text


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
def rating_submit(*, assignment: Assignment, answers: list[Answer], comment: str | None = None) -> list[Rating]:
    """Store an annotator's answers to every question of an item, and their optional comment; return the current ratings.

    All questions are required; on any error nothing is stored. Submitting the same answers
    again (a double click, a retry) stores nothing. Changing answers (or the comment) is allowed
    on any item the annotator rated, earlier ones included, while the study is open (issue 21):
    each changed answer adds a row and the old row stops being current, so every change is kept
    with its timestamp (append-only) and reports read the latest. Each returned rating's
    ``is_new`` says whether this call stored it. ``comment`` None keeps the current comment
    (an API client that never sends one does not erase it); "" clears it.

    Raises RatingInvalid (bad answers or comment), StudyClosed (the study is closed),
    ParticipantInactive (a crowd participant no longer active: ``participant_may_act``),
    ItemConflict (the annotator skipped this item), ReservationLost (expired and taken).
    """
    locked = _assignment_lock(Assignment.objects.filter(pk=assignment.pk))
    if locked is None:
        raise Assignment.DoesNotExist(f"assignment {assignment.pk} is gone")
    return _rating_store(assignment=locked, answers=answers, comment=comment)


@transaction.atomic
def rating_submit_for_item(*, study: Study, annotator, public_id: str, answers: list[Answer],
                           comment: str | None = None) -> tuple[Assignment, list[Rating]] | None:
    """``rating_submit`` for the annotator's assignment of the item with this opaque id; None if they have none.

    Finds the item and locks the assignment with two hand-written statements: the API's submit
    is one of the two requests of the annotator-load target (issue 17), and the ORM's one joined
    query (with the study and the user, which the caller holds) cost 1.1 ms of CPU to build.
    """
    item = next(iter(Item.objects.raw(_ITEM_SQL, [study.pk, public_id])), None)
    if item is None:
        return None
    lock = "FOR NO KEY UPDATE" if connection.features.has_select_for_no_key_update else ""
    assignment = next(iter(Assignment.objects.raw(_ASSIGNMENT_LOCK_SQL.format(lock=lock), [item.pk, annotator.pk])), None)
    if assignment is None:
        return None
    item.study = study
    assignment.item, assignment.annotator = item, annotator
    return assignment, _rating_store(assignment=assignment, answers=answers, comment=comment)


_ITEM_SQL = f"SELECT * FROM {Item._meta.db_table} WHERE study_id = %s AND public_id = %s"
_ASSIGNMENT_LOCK_SQL = f"SELECT * FROM {Assignment._meta.db_table} WHERE item_id = %s AND annotator_id = %s {{lock}}"
_CURRENT_SQL = f"SELECT * FROM {Rating._meta.db_table} WHERE item_id = %s AND rater = %s AND is_current"


def _assignment_lock(qs) -> Assignment | None:
    return qs.select_for_update(of=("self",), no_key=True).select_related("item__study", "annotator").first()


def _rating_store(*, assignment: Assignment, answers: list[Answer], comment: str | None = None) -> list[Rating]:
    """The body of ``rating_submit``, on an assignment locked by the caller's transaction."""
    item, study, annotator = assignment.item, assignment.item.study, assignment.annotator
    if not study.is_open:
        raise StudyClosed()
    participant_may_act(study=study, annotator=annotator)  # new and changed answers alike
    if assignment.status == Assignment.Status.SKIPPED:
        raise ItemConflict({"item": "you skipped this item: it went back to the pool and cannot be rated by you"})
    errors = {}
    current = {r.question: r for r in Rating.objects.raw(_CURRENT_SQL, [item.pk, annotator.get_username()])}
    if comment is None:
        comment = next(iter(current.values())).comment if current else ""
    try:
        comment = comment_clean(comment)
    except RatingInvalid as exc:
        errors.update(exc.errors)
    try:
        answers = answers_validate(study=study, answers=answers)
    except RatingInvalid as exc:
        errors = {**exc.errors, **errors}
    if errors:
        raise RatingInvalid(errors)
    now = timezone.now()

    if assignment.status == Assignment.Status.COMPLETED:
        unchanged = all(
            q.question in current
            and current[q.question].shown_choice == q.choice
            and current[q.question].confidence == q.confidence
            and current[q.question].comment == comment
            for q in answers
        )
        if unchanged:
            for r in current.values():
                r.is_new = False
            return [current[a.question] for a in answers]
    else:
        if assignment.status == Assignment.Status.EXPIRED or assignment.expires_at <= now:
            # A late submit still counts if the slot is free; lock the item to decide.
            Item.objects.select_for_update(no_key=True).filter(pk=item.pk).first()
            taken = Assignment.objects.filter(live_q(now), item=item).exclude(pk=assignment.pk).count()
            if item.kind in (Item.Kind.NORMAL, Item.Kind.GOLD) and taken >= study.overlap:
                raise ReservationLost(
                    {"item": "your reservation of this item expired and it went to another annotator; ask for the next item"}
                )
        assignment.status = Assignment.Status.COMPLETED
        assignment.completed_at = now
        assignment.seconds = (now - assignment.reserved_at).total_seconds()
        assignment.save(update_fields=["status", "completed_at", "seconds"])
        study_close_if_complete(study=study, item=item)  # a crowd study closes once every item has its overlap

    rater = annotator.get_username()
    ratings = [
        Rating(
            item=item, question=a.question, rater=rater, rater_kind=Rating.RaterKind.HUMAN,
            annotator=annotator, assignment=assignment, choice=_canonical(a.choice, assignment.baseline_side),
            shown_choice=a.choice, baseline_side=assignment.baseline_side, confidence=a.confidence, comment=comment,
        )
        for a in answers
    ]
    return ratings_append(ratings=ratings, compare=("shown_choice", "confidence", "comment"),
                          current={(item.pk, q, rater): r for q, r in current.items()})
