"""Ratings: validating answers and the one append-only write path of Rating rows."""


from django.db import transaction
from django.utils import timezone

from ..models import CONFIDENCE_MAX, CONFIDENCE_MIN, Assignment, Item, Rating, Study, confidence_in_scale
from .assignment import live_q
from .base import CHOICES_SHOWN, Answer, RatingInvalid, ReservationLost
from .enrolment import participant_may_submit, study_close_if_complete


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
        if not confidence_in_scale(conf):
            errors[f"{q}.confidence"] = f"give a confidence from {CONFIDENCE_MIN} (not confident) to {CONFIDENCE_MAX} (very confident)"
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
        if not participant_may_submit(study=study, annotator=annotator):
            raise ReservationLost({"item": "your time in this study is over or you left it: this answer was not stored"})
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
            shown_choice=a.choice, baseline_side=assignment.baseline_side, confidence=a.confidence,
        )
        for a in answers
    ]
    return ratings_append(ratings=ratings, compare=("shown_choice", "confidence"),
                          current={(item.pk, q, rater): r for q, r in current.items()})
