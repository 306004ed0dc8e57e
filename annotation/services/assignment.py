"""Assignment: which item an annotator rates next and on which side the baseline is shown (docs/annotation.md)."""

import hashlib
import math
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..models import STUDY_RESERVATION_MINUTES_MAX, Assignment, Item, Study
from ..selectors import live_sql, sql_params
from .base import CANDIDATES_LOCKED, User
from .enrolment import participant_may_take_items


def live_q(now, prefix: str = "") -> Q:
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
    """Quality-control items the annotator holds no live assignment of and never skipped (no overlap limit)."""
    mine = Assignment.objects.filter(item=OuterRef("pk"), annotator=annotator).filter(
        live_q(now) | Q(status=Assignment.Status.SKIPPED))
    # A repeated pair only makes sense to someone who rated the original.
    rated = Assignment.objects.filter(annotator=annotator, status=Assignment.Status.COMPLETED).values("item_id")
    return Item.objects.filter(study=study).exclude(Exists(mine)).filter(
        Q(kind=Item.Kind.TRAP_IDENTICAL) | Q(kind=Item.Kind.TRAP_REPEAT, repeat_of_id__in=rated)
    ).order_by("public_id")


# Rated items (normal, gold) the annotator holds no live assignment of and never skipped, with fewer than
# ``overlap`` live assignments, in one fixed (random, since public ids are) order: everybody works
# on the earliest open items, so items get completed one after the other, and the database reads
# only as far as it needs, not every item's count. SQL, not the ORM: this runs on every ``next``
# and building the equivalent queryset cost 4 ms of CPU a request (the annotator-load target is
# p95 < 100 ms with 50 annotators on 2 cores).
_OPEN_ITEMS_SQL = """
SELECT i.* FROM {item} i
WHERE i.study_id = %(study)s AND i.kind IN (%(normal)s, %(gold)s)
  AND NOT EXISTS (SELECT 1 FROM {assignment} m WHERE m.item_id = i.id AND m.annotator_id = %(me)s
                  AND ({live_m} OR m.status = %(skipped)s))
  AND (SELECT COUNT(*) FROM {assignment} a WHERE a.item_id = i.id AND {live_a}) < %(overlap)s
ORDER BY i.public_id
LIMIT %(limit)s {{lock}}
""".format(item=Item._meta.db_table, assignment=Assignment._meta.db_table, live_m=live_sql("m"), live_a=live_sql("a"))
# FOR NO KEY UPDATE: excludes other reservers of the row but not the key-share locks that
# inserting ratings and assignments (foreign keys to the item) take; FOR UPDATE would make every
# submit wait for, and be skipped by, concurrent reservations.
_LOCKS = {"skip": "FOR NO KEY UPDATE OF i SKIP LOCKED", "wait": "FOR NO KEY UPDATE OF i", "none": ""}


# The other statements of ``next``, hand-written for the same reason (issue 17's load target,
# p95 < 100 ms with 100 annotators: the ORM built each of them for 0.4-1.1 ms of CPU per request;
# docs/results.md). Datetimes are compared in SQL, so no row carries one back.
_ANNOTATOR_LOCK_SQL = f"SELECT 1 FROM {User._meta.db_table} u WHERE u.id = %(me)s {{lock}}"
_MINE_SQL = f"""
SELECT a.id, a.item_id, i.kind, a.baseline_side, a.status,
       CASE WHEN a.status = %(reserved)s AND a.expires_at > %(now)s THEN 1 ELSE 0 END
FROM {Assignment._meta.db_table} a JOIN {Item._meta.db_table} i ON i.id = a.item_id
WHERE a.annotator_id = %(me)s AND i.study_id = %(study)s
ORDER BY a.reserved_at, a.id
"""
_SIDES_SQL = """
SELECT a.item_id, a.baseline_side FROM {assignment} a
WHERE a.item_id IN ({{items}}) AND a.annotator_id <> %(me)s AND {live_a}
""".format(assignment=Assignment._meta.db_table, live_a=live_sql("a"))


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
    goes back to the pool. A crowd participant gets items only while admitted, in time and under
    the study's items per participant (``enrolment.participant_may_take_items``).
    """
    if not study.is_open or not participant_may_take_items(study=study, annotator=annotator):
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
    params = sql_params(study=study, annotator=annotator, now=now)
    with connection.cursor() as cursor:
        # One request at a time per annotator (a double click must not reserve two items).
        lock = "FOR NO KEY UPDATE" if connection.features.has_select_for_no_key_update else ""
        cursor.execute(_ANNOTATOR_LOCK_SQL.format(lock=lock), params)
        # All of the annotator's assignments in this study, in one query (a new snapshot, after
        # the lock): their live reservation, stale ones, the sides they saw so far and the kinds
        # of items they rated. (pk, item id, item kind, baseline side, status, live), oldest first.
        cursor.execute(_MINE_SQL, params)
        rows = cursor.fetchall()
    live = [r for r in rows if r[5]]
    if live:
        return Assignment.objects.select_related("item").get(pk=live[-1][0]), False
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
        with connection.cursor() as cursor:
            ids = {f"item{k}": item.pk for k, item in enumerate(locked)}
            cursor.execute(_SIDES_SQL.format(items=", ".join(f"%({k})s" for k in ids)), {**params, **ids})
            for item_id, side in cursor.fetchall():
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
    # Clamped as well as validated: a row stored before the bound existed must not overflow the datetime.
    expires = now + timedelta(minutes=min(study.reservation_minutes, STUDY_RESERVATION_MINUTES_MAX))
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
