"""The annotator's workflow services on the real database (issue 21): change earlier answers,
skip, flag, comments in the votes export, instructions confirmed once per version."""
import csv
import io
import random
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from annotation import selectors, services, workflow_selectors
from annotation.models import COMMENT_MAX_CHARS, Assignment, Flag, Rating, Study
from annotation.services import ItemConflict, RatingInvalid, StudyClosed
from tests.factories import annotators_create, answer_all, toy_study

pytestmark = pytest.mark.django_db

HOSTILE = [
    '=HYPERLINK("http://evil.example","click")',
    "<script>alert('x')</script> & <b>bold</b>",
    "מה? هذا النص من اليمين إلى اليسار",
    "'quoted already, and\na second line",
    "x" * 300,  # one very long word
]


def _export(study: Study) -> str:
    out = StringIO()
    call_command("export_votes", study.slug, stdout=out)
    return out.getvalue()


def test_an_earlier_item_changed_after_moving_on_appends_and_the_export_uses_the_latest(tmp_path):
    study = toy_study(tmp_path, n=3, overlap=1)
    (u,) = annotators_create(study, 1)
    first = services.assignment_next(study=study, annotator=u)
    services.rating_submit(assignment=first, answers=answer_all("A", 3), comment="first thought")
    second = services.assignment_next(study=study, annotator=u)
    services.rating_submit(assignment=second, answers=answer_all("B", 4))
    services.assignment_next(study=study, annotator=u)  # a third item is reserved: two moves on

    changed = services.rating_submit(assignment=first, answers=answer_all("A", 3, q1="S"), comment="second thought")
    assert sum(r.is_new for r in changed) == 4  # the comment changed on every row, q1's choice too
    rows = Rating.objects.filter(item=first.item, question="q1").order_by("created_at", "pk")
    assert [(r.shown_choice, r.comment, r.is_current) for r in rows] == [
        ("A", "first thought", False), ("S", "second thought", True)]
    exported = [r for r in csv.DictReader(io.StringIO(_export(study))) if r["item_key"] == first.item.key]
    assert {(r["question"], r["choice"], r["comment"]) for r in exported if r["question"] == "q1"} == {
        ("q1", "similar", "second thought")}
    # The same answers again store nothing; no comment given (None) keeps the current one.
    again = services.rating_submit(assignment=first, answers=answer_all("A", 3, q1="S"))
    assert not any(r.is_new for r in again) and {r.comment for r in again} == {"second thought"}
    assert workflow_selectors.assignment_current_comment(assignment=first) == "second thought"


def test_a_closed_study_is_read_only_for_answers_skips_and_flags(tmp_path):
    study = toy_study(tmp_path, n=3, overlap=1)
    (u,) = annotators_create(study, 1)
    done = services.assignment_next(study=study, annotator=u)
    services.rating_submit(assignment=done, answers=answer_all("A"))
    live = services.assignment_next(study=study, annotator=u)
    services.study_update(study=study, is_open=False)
    study.refresh_from_db()
    before = Rating.objects.count()
    for assignment in (done, live):
        with pytest.raises(StudyClosed, match="closed"):
            services.rating_submit(assignment=assignment, answers=answer_all("B"))
    with pytest.raises(StudyClosed):
        services.assignment_skip(study=study, annotator=u, public_id=live.item.public_id, reason="broken")
    with pytest.raises(StudyClosed):
        services.flag_create(study=study, annotator=u, public_id=done.item.public_id, comment="typo")
    assert Rating.objects.count() == before and not Flag.objects.exists()
    assert Assignment.objects.get(pk=live.pk).status == Assignment.Status.RESERVED


def test_a_skip_frees_the_slot_for_someone_else_and_the_item_never_comes_back(tmp_path):
    study = toy_study(tmp_path, n=3, overlap=1)
    u1, u2 = annotators_create(study, 2)
    a = services.assignment_next(study=study, annotator=u1)
    skipped_item = a.item
    assert selectors.annotator_progress(study=study, annotator=u1) == {"done": 0, "total": 3}
    out = services.assignment_skip(study=study, annotator=u1, public_id=skipped_item.public_id, reason="cannot_judge")
    assert (out.status, out.skip_reason) == ("skipped", "cannot_judge")
    # Its slot is free: the other annotator is offered it first (the items' order is fixed).
    b = services.assignment_next(study=study, annotator=u2)
    assert b.item_id == skipped_item.pk
    # The skipper never gets it again, and their progress no longer counts it.
    assert selectors.annotator_progress(study=study, annotator=u1)["total"] == 2
    seen = []
    while (nxt := services.assignment_next(study=study, annotator=u1)) is not None:
        seen.append(nxt.item_id)
        services.rating_submit(assignment=nxt, answers=answer_all("A"))
    assert skipped_item.pk not in seen and len(seen) == 2
    # Staff: the skip and its reason are kept; rating the skipped item is refused.
    with pytest.raises(ItemConflict, match="skipped"):
        services.rating_submit(assignment=Assignment.objects.get(pk=a.pk), answers=answer_all("A"))
    rows = workflow_selectors.annotator_items(study=study, annotator=u1)
    assert [(r["status"], r["skip_reason"]) for r in rows][0] == ("skipped", "cannot_judge")
    state = {r["item"]: r for r in selectors.study_items_state(study=study)}[skipped_item.public_id]
    assert (state["skipped"], state["completed"], state["reserved"]) == (1, 0, 1)  # u2 holds it now


def test_skip_refuses_an_unknown_reason_a_rated_item_and_answers_none_for_someone_elses_item(tmp_path):
    study = toy_study(tmp_path, n=3, overlap=2)
    u1, u2 = annotators_create(study, 2)
    a = services.assignment_next(study=study, annotator=u1)
    for reason in ("", "bored", None, "CANNOT_JUDGE"):
        with pytest.raises(RatingInvalid, match="reason"):
            services.assignment_skip(study=study, annotator=u1, public_id=a.item.public_id, reason=reason)
    assert services.assignment_skip(study=study, annotator=u2, public_id=a.item.public_id, reason="broken") is None
    services.rating_submit(assignment=a, answers=answer_all("A"))
    with pytest.raises(ItemConflict, match="already answered"):
        services.assignment_skip(study=study, annotator=u1, public_id=a.item.public_id, reason="broken")
    assert Assignment.objects.get(pk=a.pk).status == Assignment.Status.COMPLETED


def test_with_random_skips_every_item_still_gets_its_overlap_and_sides_stay_within_the_bound(tmp_path):
    study = toy_study(tmp_path, n=12, overlap=3, seed=5)
    users = annotators_create(study, 6)
    rng = random.Random(21)
    active = list(users)
    while active:
        for u in list(active):
            a = services.assignment_next(study=study, annotator=u)
            if a is None:
                active.remove(u)
            elif rng.random() < 0.25:
                services.assignment_skip(study=study, annotator=u, public_id=a.item.public_id, reason="offensive")
            else:
                services.rating_submit(assignment=a, answers=answer_all("A"))
    completed = Assignment.objects.filter(status=Assignment.Status.COMPLETED)
    skipped = Assignment.objects.filter(status=Assignment.Status.SKIPPED)
    assert skipped.exists()
    for item in study.items.all():
        # Each item gets its overlap, or every rater who did not skip it when too many did.
        expected = min(study.overlap, len(users) - skipped.filter(item=item).count())
        assert completed.filter(item=item).count() == expected, item.key
    for s in skipped:  # nobody was given back, or rated, an item they skipped
        assert not Rating.objects.filter(item=s.item_id, annotator=s.annotator_id).exists()
    for u in users:
        sides = list(completed.filter(annotator=u).values_list("baseline_side", flat=True))
        assert abs(sides.count("A") - sides.count("B")) <= services.SIDE_BALANCE_BOUND


def test_flags_need_a_comment_within_the_limit_and_staff_resolve_them(tmp_path):
    study = toy_study(tmp_path, n=2, overlap=1)
    u1, u2 = annotators_create(study, 2)
    a = services.assignment_next(study=study, annotator=u1)
    pid = a.item.public_id
    for bad, why in (("", "write what is wrong"), ("   \n ", "write what is wrong"), (None, "write what is wrong"),
                     ("x" * (COMMENT_MAX_CHARS + 1), f"at most {COMMENT_MAX_CHARS}"), ("a\x00b", "NUL"),
                     (42, "must be text")):
        with pytest.raises(RatingInvalid, match=why):
            services.flag_create(study=study, annotator=u1, public_id=pid, comment=bad)
    assert services.flag_create(study=study, annotator=u2, public_id=pid, comment="not mine") is None
    assert not Flag.objects.exists()
    flag = services.flag_create(study=study, annotator=u1, public_id=pid, comment="  " + HOSTILE[1] + "  ")
    assert flag.comment == HOSTILE[1]
    assert Assignment.objects.get(pk=a.pk).status == Assignment.Status.RESERVED  # a flag changes no assignment
    rows = workflow_selectors.study_flags(study=study)
    assert [(r["item_key"], r["annotator"], r["comment"]) for r in rows][0] == (a.item.key, "ann0", HOSTILE[1])
    staff = User.objects.create_user("boss", password="pw-12345678", is_staff=True)
    services.flag_resolve(flag=flag, by=staff)
    services.flag_resolve(flag=flag, by=u1)  # resolving again changes nothing
    flag.refresh_from_db()
    assert flag.resolved_by == staff and flag.resolved_at is not None
    # Once staff resolved the first report, the annotator may report the item again.
    longest = services.flag_create(study=study, annotator=u1, public_id=pid, comment="y" * COMMENT_MAX_CHARS)
    assert len(longest.comment) == COMMENT_MAX_CHARS
    assert [r["id"] for r in workflow_selectors.study_flags(study=study)] == [longest.pk]
    assert len(workflow_selectors.study_flags(study=study, include_resolved=True)) == 2


def test_a_comment_over_the_limit_or_not_text_stores_nothing(tmp_path):
    study = toy_study(tmp_path, n=1, overlap=1)
    (u,) = annotators_create(study, 1)
    a = services.assignment_next(study=study, annotator=u)
    for bad in ("z" * (COMMENT_MAX_CHARS + 1), ["a list"], "nul\x00"):
        with pytest.raises(RatingInvalid) as exc:
            services.rating_submit(assignment=a, answers=answer_all("A"), comment=bad)
        assert "comment" in exc.value.errors
    assert not Rating.objects.exists()
    services.rating_submit(assignment=a, answers=answer_all("A"), comment="z" * COMMENT_MAX_CHARS)
    assert Rating.objects.filter(is_current=True).count() == 4


def test_hostile_comments_round_trip_through_export_and_import_neutralised(tmp_path):
    """export_votes writes comments through common.csv_safe; import_votes reads them back exactly."""
    source = toy_study(tmp_path, n=len(HOSTILE), overlap=1, slug="src")
    copy = toy_study(tmp_path, n=len(HOSTILE), overlap=1, slug="copy")
    (u,) = annotators_create(source, 1)
    for comment in HOSTILE:
        a = services.assignment_next(study=source, annotator=u)
        services.rating_submit(assignment=a, answers=answer_all("B", 5), comment=comment)
    text = _export(source)
    assert "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text  # neutralised: no cell starts a formula
    assert "'=HYPERLINK" in text
    path = tmp_path / "votes.csv"
    path.write_text(text, encoding="utf-8")
    services.votes_import(study=copy, path=path)
    assert selectors.study_votes_rows(study=copy) == selectors.study_votes_rows(study=source)
    assert {r["comment"] for r in selectors.study_votes_rows(study=copy)} == set(HOSTILE)
    # Importing the same file again changes nothing; an edited comment is appended as a change.
    assert services.votes_import(study=copy, path=path)["unchanged"] == 4 * len(HOSTILE)
    edited = tmp_path / "edited.csv"
    edited.write_text(text.replace("x" * 300, "shorter"), encoding="utf-8")
    assert services.votes_import(study=copy, path=edited)["changed"] == 4


def test_instructions_are_confirmed_once_per_version_in_the_database(tmp_path):
    study = toy_study(tmp_path, n=1)
    (u,) = annotators_create(study, 1)
    assert not services.instructions_confirmed(study=study, annotator=u)
    services.instructions_confirm(study=study, annotator=u)
    services.instructions_confirm(study=study, annotator=u)
    assert services.instructions_confirmed(study=study, annotator=u)
    study = services.study_update(study=study, instructions="New rules: read the persona first.")
    assert study.instructions_version == 2
    assert not services.instructions_confirmed(study=study, annotator=u)
    assert services.instructions_confirm(study=study, annotator=u).version == 2
    assert services.instructions_confirmed(study=study, annotator=u)
