"""Annotation services on the real database: import, blinded assignment, append-only ratings, quality control."""
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from annotation import selectors, services
from annotation.models import DEFAULT_QUESTIONS, Assignment, Item, Rating, Study
from annotation.services import Answer, RatingInvalid, ReservationLost, StudyFileError
from tests.factories import annotators_create, answer_all, jsonl_write, toy_study, toy_study_lines

pytestmark = pytest.mark.django_db


def rate_until_done(study: Study, users: list[User], choice="A") -> int:
    """Round-robin: each annotator takes and rates one item per turn until nobody gets one."""
    done, active = 0, list(users)
    while active:
        for u in list(active):
            a = services.assignment_next(study=study, annotator=u)
            if a is None:
                active.remove(u)
                continue
            services.rating_submit(assignment=a, answers=answer_all(choice))
            done += 1
    return done


# --------------------------------------------------------------------------- import


def test_import_creates_items_with_the_papers_four_questions_and_reimport_changes_nothing(tmp_path):
    lines = toy_study_lines(3)
    lines[1]["history"] = "User: hi there\nAgent: hello!\nUser: any pets?"
    lines[2]["generic_response"] = ""
    path = jsonl_write(tmp_path / "a.jsonl", lines + [""])
    study, n = services.study_import_jsonl(path=path, slug="x", baseline="PreSFT(Hist)", challenger="PostGRAG")
    assert n == 3 and study.overlap == 3
    assert [(q.key, q.label, q.text) for q in study.questions.all()] == DEFAULT_QUESTIONS
    item = study.items.get(key="spc/test/1")
    assert item.history == [
        {"role": "user", "text": "hi there"}, {"role": "agent", "text": "hello!"}, {"role": "user", "text": "any pets?"}
    ]
    assert item.baseline_response == "base says 1" and item.challenger_response == "chal says I have 1 dogs"
    ids = sorted(study.items.values_list("public_id", flat=True))
    study2, n2 = services.study_import_jsonl(path=path, slug="x", baseline="PreSFT(Hist)", challenger="PostGRAG")
    assert (study2.pk, n2) == (study.pk, 3)
    assert sorted(study.items.values_list("public_id", flat=True)) == ids
    assert Study.objects.count() == 1


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"key": "k", "persona": "p"', "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"key": "k2", "responses": {"PreSFT(Hist)": "x"}}',
         "\"responses\" has no entry for system 'PostGRAG' (it has: 'PreSFT(Hist)')"),
        ('{"key": "k2", "responses": {"PreSFT(Hist)": "x", "PostGRAG": null}}',
         "the response of system 'PostGRAG' must be a string (it may be empty), not NoneType"),
        ('{"key": "k2", "history": [{"role": "bot", "text": "x"}], "responses": {"PreSFT(Hist)": "x", "PostGRAG": "y"}}',
         "history[0]"),
        ('{"key": "spc/test/0", "responses": {"PreSFT(Hist)": "x", "PostGRAG": "y"}}', "already used on line 1"),
        ('{"persona": "no key", "responses": {"PreSFT(Hist)": "x", "PostGRAG": "y"}}', '"key" is missing'),
        ('{"key": "k3", "generic_response": 5, "responses": {"PreSFT(Hist)": "x", "PostGRAG": "y"}}', "generic_response"),
    ],
)
def test_a_bad_line_names_file_and_line_and_writes_nothing(tmp_path, bad_line, message):
    good = [json.dumps(x) for x in toy_study_lines(2)]
    path = jsonl_write(tmp_path / "bad.jsonl", [good[0], good[1], bad_line])
    with pytest.raises(StudyFileError) as exc:
        services.study_import_jsonl(path=path, slug="bad", baseline="PreSFT(Hist)", challenger="PostGRAG")
    assert f"{path}:3:" in str(exc.value) and message in str(exc.value)
    assert not Study.objects.exists() and not Item.objects.exists()


def test_wrong_encoding_and_overlong_lines_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(toy_study_lines(1)[0]).encode() + b"\n" + '{"key": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(StudyFileError, match=r"latin1.jsonl:2: not UTF-8"):
        services.study_import_jsonl(path=path, slug="enc", baseline="PreSFT(Hist)", challenger="PostGRAG")
    monkeypatch.setattr(services.study_files, "MAX_LINE_BYTES", 300)  # the module that reads study files
    lines = toy_study_lines(2)
    lines[1]["persona"] = "very long " * 100
    path = jsonl_write(tmp_path / "long.jsonl", lines)
    with pytest.raises(StudyFileError, match=r"long.jsonl:2: line is longer than 300 bytes"):
        services.study_import_jsonl(path=path, slug="long", baseline="PreSFT(Hist)", challenger="PostGRAG")
    assert not Study.objects.exists()


def test_reimport_with_a_changed_item_is_refused_and_adds_nothing(tmp_path):
    toy_study(tmp_path, n=2, slug="c")
    lines = toy_study_lines(3)
    lines[0]["responses"]["PostGRAG"] = "edited"
    path = jsonl_write(tmp_path / "c2.jsonl", lines)
    with pytest.raises(StudyFileError, match="differs from the one already in study 'c'"):
        services.study_import_jsonl(path=path, slug="c", baseline="PreSFT(Hist)", challenger="PostGRAG")
    assert Item.objects.count() == 2


def test_study_from_stored_responses_takes_a_seeded_subset(db):
    from modeling.models import Conversation, Dataset, Response, Sample, System

    ds = Dataset.objects.create(name="spc", kind="spc")
    conv = Conversation.objects.create(dataset=ds, split="test", source_id="c1", turns=[])
    samples = [
        Sample.objects.create(dataset=ds, conversation=conv, split="test", turn_index=i, key=f"spc/test/c1/{i}",
                              agent_persona="I like tea.", history=[{"role": "user", "text": "hi"}], reference="r",
                              generic_response="generic")
        for i in range(10)
    ]
    base = System.objects.create(name="PreSFT(Hist)", method="presft_hist")
    chal = System.objects.create(name="PostGRAG", method="postgrag")
    for s in samples:
        Response.objects.create(system=base, sample=s, text=f"b{s.turn_index}")
        if s.turn_index != 9:
            Response.objects.create(system=chal, sample=s, text=f"c{s.turn_index}")
    study = services.study_create_from_systems(slug="sys", baseline=base, challenger=chal, limit=5, seed=3)
    again = services.study_create_from_systems(slug="sys2", baseline=base, challenger=chal, limit=5, seed=3)
    keys = set(study.items.values_list("key", flat=True))
    assert len(keys) == 5 and keys == set(again.items.values_list("key", flat=True))
    assert "spc/test/c1/9" not in keys  # the challenger never answered it
    item = study.items.first()
    assert item.generic_response == "generic" and item.baseline_response == f"b{item.sample.turn_index}"
    assert study.questions.count() == 4 and study.baseline_system == base


def test_create_study_task_makes_the_study_from_a_job(db):
    from modeling.models import Conversation, Dataset, Response, Sample, System
    from worker.models import Job
    from worker.tasks.annotation import create_study

    ds = Dataset.objects.create(name="spc", kind="spc")
    conv = Conversation.objects.create(dataset=ds, split="test", source_id="c1", turns=[])
    base = System.objects.create(name="A1", method="presft_hist")
    chal = System.objects.create(name="B1", method="postgrag")
    for i in range(3):
        s = Sample.objects.create(dataset=ds, conversation=conv, split="test", turn_index=i, key=f"k{i}", reference="r")
        Response.objects.create(system=base, sample=s, text="b")
        Response.objects.create(system=chal, sample=s, text="c")
    User.objects.create_user("ann")
    job = Job.objects.create(kind=Job.Kind.STUDY, params={"slug": "t", "baseline": "A1", "challenger": chal.pk,
                                                          "annotators": ["ann"]})
    create_study.run(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["items"] == 3
    assert Study.objects.get(slug="t").annotators.filter(username="ann").exists()


# --------------------------------------------------------------------------- assignment and blinding


def test_each_item_gets_exactly_overlap_ratings_and_nobody_rates_an_item_twice(tmp_path):
    study = toy_study(tmp_path, n=7, overlap=3)
    users = annotators_create(study, 5)
    assert rate_until_done(study, users) == 21
    for item in study.items.all():
        assert item.assignments.filter(status=Assignment.Status.COMPLETED).count() == 3
    per_pair = Assignment.objects.values_list("item_id", "annotator_id")
    assert len(per_pair) == len(set(per_pair))
    assert services.assignment_next(study=study, annotator=users[0]) is None


def test_sides_are_balanced_per_annotator_and_each_items_raters_see_both_orders(tmp_path):
    study = toy_study(tmp_path, n=12, overlap=3, seed=7)
    users = annotators_create(study, 6)
    active = list(users)
    while active:
        for u in list(active):
            a = services.assignment_next(study=study, annotator=u)
            if a is None:
                active.remove(u)
                continue
            services.rating_submit(assignment=a, answers=answer_all())
            sides = list(Assignment.objects.filter(annotator=u, status="completed").values_list("baseline_side", flat=True))
            assert abs(sides.count("A") - sides.count("B")) <= services.SIDE_BALANCE_BOUND, (u.username, sides)
    for item in study.items.all():
        sides = set(item.assignments.values_list("baseline_side", flat=True))
        assert sides == {"A", "B"}, item.key


def test_a_side_is_stored_not_reshuffled_and_the_payload_reveals_no_system(tmp_path):
    study = toy_study(tmp_path, n=3, overlap=1)
    (u,) = annotators_create(study, 1)
    a = services.assignment_next(study=study, annotator=u)
    assert services.assignment_next(study=study, annotator=u).pk == a.pk  # a reload gets the same reservation
    payload = selectors.item_payload(assignment=a)
    assert selectors.item_payload(assignment=a) == payload
    assert set(payload) == {"item", "persona", "history", "generic_response", "response_a", "response_b", "questions",
                            "progress"}
    text = json.dumps(payload)
    for secret in ("PreSFT", "PostGRAG", a.item.key, f'"{a.item.pk}"', "baseline", "challenger"):
        assert secret not in text
    expected_a = a.item.baseline_response if a.baseline_side == "A" else a.item.challenger_response
    assert payload["response_a"] == expected_a
    assert payload["item"] == a.item.public_id and len(payload["item"]) >= 16
    assert payload["progress"] == {"done": 0, "total": 3}


def test_an_expired_reservation_returns_the_item_to_the_pool_and_a_late_submit_is_refused(tmp_path):
    study = toy_study(tmp_path, n=1, overlap=1)
    slow, fast = annotators_create(study, 2)
    a = services.assignment_next(study=study, annotator=slow)
    assert services.assignment_next(study=study, annotator=fast) is None  # the only slot is reserved
    Assignment.objects.filter(pk=a.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    b = services.assignment_next(study=study, annotator=fast)
    assert b is not None and b.item_id == a.item_id
    services.rating_submit(assignment=b, answers=answer_all())
    with pytest.raises(ReservationLost):
        services.rating_submit(assignment=a, answers=answer_all("B"))
    assert Rating.objects.filter(rater="ann0").count() == 0
    assert Assignment.objects.filter(item=a.item, status="completed").count() == 1


def test_a_late_submit_still_counts_when_the_slot_is_free(tmp_path):
    study = toy_study(tmp_path, n=1, overlap=1)
    (u,) = annotators_create(study, 1)
    a = services.assignment_next(study=study, annotator=u)
    Assignment.objects.filter(pk=a.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert len(services.rating_submit(assignment=a, answers=answer_all())) == 4


def test_a_closed_study_gives_no_items(tmp_path):
    study = toy_study(tmp_path, n=2)
    (u,) = annotators_create(study, 1)
    services.study_update(study=study, is_open=False)
    assert services.assignment_next(study=study, annotator=u) is None


# --------------------------------------------------------------------------- ratings


def test_answers_are_stored_canonically_with_the_side_shown(tmp_path):
    # Sides are coin flips within the balance bound (issue 17): rate until both were shown
    # (12 items: all on one side has probability 2 / 2**12).
    study = toy_study(tmp_path, n=12, overlap=1)
    (u,) = annotators_create(study, 1)
    seen = set()
    while seen != {"A", "B"}:
        a = services.assignment_next(study=study, annotator=u)
        assert a is not None, "12 items all shown with the baseline on one side"
        ratings = services.rating_submit(assignment=a, answers=answer_all("A", q4="S"))
        expected = "baseline" if a.baseline_side == "A" else "challenger"
        assert [r.choice for r in ratings] == [expected] * 3 + ["similar"]
        assert all(r.shown_choice in ("A", "S") and r.baseline_side == a.baseline_side for r in ratings)
        seen.add(a.baseline_side)
        a.refresh_from_db()
        assert a.status == "completed" and a.seconds is not None and a.seconds >= 0
    assert seen == {"A", "B"}


def test_missing_or_invalid_answers_name_the_field_and_store_nothing(tmp_path):
    study = toy_study(tmp_path, n=1)
    (u,) = annotators_create(study, 1)
    a = services.assignment_next(study=study, annotator=u)
    bad = [Answer("q1", "A", 3), Answer("q2", "A", 9), Answer("q3", "maybe", 3), Answer("q9", "A", 3)]
    with pytest.raises(RatingInvalid) as exc:
        services.rating_submit(assignment=a, answers=bad)
    assert set(exc.value.errors) == {"q2.confidence", "q3", "q4", "q9"}
    assert "choose A, B or Similar" in exc.value.errors["q3"]
    assert not Rating.objects.exists()
    a.refresh_from_db()
    assert a.status == "reserved"


def test_a_repeated_submit_stores_nothing_twice(tmp_path):
    study = toy_study(tmp_path, n=2)
    (u,) = annotators_create(study, 1)
    a = services.assignment_next(study=study, annotator=u)
    first = services.rating_submit(assignment=a, answers=answer_all("B", 2))
    again = services.rating_submit(assignment=a, answers=answer_all("B", 2))
    assert [r.pk for r in again] == [r.pk for r in first]
    assert Rating.objects.count() == 4


def test_changes_are_appended_and_the_latest_is_current_even_after_moving_on(tmp_path):
    study = toy_study(tmp_path, n=2)
    (u,) = annotators_create(study, 1)
    a = services.assignment_next(study=study, annotator=u)
    services.rating_submit(assignment=a, answers=answer_all("A", 3))
    services.rating_submit(assignment=a, answers=answer_all("A", 3, q2="B"))
    q2 = Rating.objects.filter(item=a.item, question="q2").order_by("created_at", "pk")
    assert [(r.shown_choice, r.is_current) for r in q2] == [("A", False), ("B", True)]
    assert q2[0].created_at <= q2[1].created_at
    assert Rating.objects.filter(is_current=True).count() == 4 and Rating.objects.count() == 5
    assert selectors.assignment_current_answers(assignment=a)["q2"] == {"choice": "B", "confidence": 3}
    services.assignment_next(study=study, annotator=u)  # moves on: the earlier item can still be changed (issue 21)
    services.rating_submit(assignment=a, answers=answer_all("S", 3))
    assert Rating.objects.filter(item=a.item, is_current=True).values_list("shown_choice", flat=True).distinct().get() == "S"
    assert Rating.objects.count() == 9


def test_annotator_add_creates_adds_and_never_changes_the_password(tmp_path):
    study = toy_study(tmp_path, n=1)
    u = services.annotator_add(username="zoe", password="first-pass-1", study=None)
    assert u.check_password("first-pass-1") and not u.is_staff
    services.annotator_add(username="zoe", password=None, study=study)
    u.refresh_from_db()
    assert u.check_password("first-pass-1") and list(selectors.annotator_studies(user=u)) == [study]
    # Issue 17: an existing account's password is its owner's (or a superuser's) to change.
    with pytest.raises(services.AccountRefused, match="already has an account"):
        services.annotator_add(username="zoe", password="second-pass-2", study=study)
    u.refresh_from_db()
    assert u.check_password("first-pass-1") and study.annotators.count() == 1
    with pytest.raises(ValueError):
        services.annotator_add(username="  ", password="x", study=None)


def test_study_update_edits_questions_and_bumps_the_instructions_version(tmp_path):
    study = toy_study(tmp_path, n=1)
    services.study_update(study=study, instructions="# Read me", questions=[
        {"key": "q1", "label": "Naturalness", "text": "Which is more fluent?"}, {"key": "q2", "label": "Acc", "text": "Which is right?"},
    ])
    study.refresh_from_db()
    assert study.instructions_version == 2
    assert [(q.key, q.text) for q in study.questions.all()] == [("q1", "Which is more fluent?"), ("q2", "Which is right?")]
    with pytest.raises(ValueError, match="cannot change"):
        services.study_update(study=study, baseline_name="x")


# --------------------------------------------------------------------------- quality control


def test_trap_items_are_mixed_in_unmarked_and_kept_out_of_the_aggregate(tmp_path):
    study = toy_study(tmp_path, n=8, overlap=2, trap_rate=0.25)
    kinds = list(study.items.values_list("kind", flat=True))
    assert kinds.count("trap_identical") == 1 and kinds.count("trap_repeat") == 1
    users = annotators_create(study, 2)
    served = {u.pk: [] for u in users}
    active = list(users)
    while active:
        for u in list(active):
            a = services.assignment_next(study=study, annotator=u)
            if a is None:
                active.remove(u)
                continue
            payload = selectors.item_payload(assignment=a)
            assert set(payload) == {"item", "persona", "history", "generic_response", "response_a", "response_b",
                                    "questions", "progress"}
            assert "trap" not in json.dumps(payload)
            served[u.pk].append(a)
            # ann0 answers the identical pair "Similar" and repeats consistently; ann1 always says A.
            if u.username == "ann0":
                choice = "S" if a.item.kind == "trap_identical" else "A"
                if a.item.kind == "trap_repeat":
                    choice = "B"  # sides are swapped, so the same opinion is the other letter
            else:
                choice = "A"
            services.rating_submit(assignment=a, answers=answer_all(choice))
    for u in users:
        kinds_seen = [a.item.kind for a in served[u.pk]]
        assert "trap_identical" in kinds_seen
        assert kinds_seen[0] == "normal"  # a trap never opens the session
        repeat = next((a for a in served[u.pk] if a.item.kind == "trap_repeat"), None)
        if repeat is not None:
            original = Assignment.objects.get(item=repeat.item.repeat_of, annotator=u)
            assert original.baseline_side != repeat.baseline_side
    assert all(r.item.kind == "normal" for r in selectors.study_ratings(study=study))
    assert selectors.study_ratings(study=study).count() == 8 * 2 * 4
    quality = {q["annotator"]: q for q in selectors.annotator_quality(study=study)}
    assert quality["ann0"]["pass_rate"] == 1.0
    assert quality["ann1"]["pass_rate"] == 0.0
    if quality["ann0"]["repeats"]:
        assert quality["ann0"]["consistency"] == 1.0
    assert quality["ann1"]["left_preference"] == 1.0


def test_gold_items_from_the_file_are_scored_and_too_fast_items_flagged(tmp_path):
    lines = toy_study_lines(2)
    lines[1]["gold"] = {"q1": "PostGRAG", "q2": "similar"}
    path = jsonl_write(tmp_path / "g.jsonl", lines)
    study, n = services.study_import_jsonl(path=path, slug="g", baseline="PreSFT(Hist)", challenger="PostGRAG", overlap=1)
    study.too_fast_seconds = 5
    study.save()
    (u,) = annotators_create(study, 1)
    for _ in range(2):
        a = services.assignment_next(study=study, annotator=u)
        if a.item.kind == "gold":
            chal = "A" if a.baseline_side == "B" else "B"
            answers = answer_all(chal, q2="A")  # q1 right, q2 wrong
        else:
            Assignment.objects.filter(pk=a.pk).update(reserved_at=timezone.now() - timedelta(seconds=60))
            answers = answer_all()
        services.rating_submit(assignment=a, answers=answers)
    (q,) = selectors.annotator_quality(study=study)
    assert (q["checks"], q["pass_rate"]) == (2, 0.5)
    assert (q["items"], q["too_fast"]) == (2, 1)
    assert selectors.study_ratings(study=study).count() == 4  # the gold item is kept out


def test_responses_that_give_their_author_away_are_flagged_before_the_study_opens(tmp_path):
    lines = toy_study_lines(4)
    lines[0]["responses"]["PostGRAG"] = "As an AI language model, I do not own dogs."
    lines[1]["responses"]["PreSFT(Hist)"] = "I am PreSFT(Hist) and I like dogs."
    lines[2]["responses"]["PostGRAG"] = "Bartholomew, my dog, says hi."  # a name, not the BART model
    path = jsonl_write(tmp_path / "tells.jsonl", lines)
    study, _ = services.study_import_jsonl(path=path, slug="tells", baseline="PreSFT(Hist)", challenger="PostGRAG")
    found = selectors.study_author_tells(study=study)
    assert [(f["item"], f["response"]) for f in found] == [("spc/test/0", "challenger"), ("spc/test/1", "baseline")]
    assert found[0]["match"].lower() == "as an ai" and found[1]["match"] == "PreSFT(Hist)"


def test_an_annotator_coming_back_after_expiry_gets_the_item_again_in_the_same_order(tmp_path):
    study = toy_study(tmp_path, n=1, overlap=1)
    (u,) = annotators_create(study, 1)
    a = services.assignment_next(study=study, annotator=u)
    Assignment.objects.filter(pk=a.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    again = services.assignment_next(study=study, annotator=u)
    assert (again.pk, again.item_id, again.baseline_side, again.status) == (a.pk, a.item_id, a.baseline_side, "reserved")
    assert again.expires_at > timezone.now()
    assert selectors.item_payload(assignment=again)["response_a"] == selectors.item_payload(assignment=a)["response_a"]
    assert len(services.rating_submit(assignment=again, answers=answer_all())) == 4
    assert Assignment.objects.count() == 1


def test_progress_counts_done_reserved_and_only_the_items_still_open_to_the_annotator(tmp_path):
    study = toy_study(tmp_path, n=4, overlap=2)
    me, x, y = annotators_create(study, 3)
    assert selectors.annotator_progress(study=study, annotator=me) == {"done": 0, "total": 4}
    # x and y fill the first item (overlap 2): it is no longer open to me.
    full = services.assignment_next(study=study, annotator=x)
    services.rating_submit(assignment=full, answers=answer_all())
    other = services.assignment_next(study=study, annotator=y)
    assert other.item_id == full.item_id
    assert selectors.annotator_progress(study=study, annotator=me) == {"done": 0, "total": 3}
    # My own reservation counts toward my total; my completed item counts as done.
    mine = services.assignment_next(study=study, annotator=me)
    assert selectors.annotator_progress(study=study, annotator=me) == {"done": 0, "total": 3}
    services.rating_submit(assignment=mine, answers=answer_all())
    assert selectors.annotator_progress(study=study, annotator=me) == {"done": 1, "total": 3}
    # y's reservation expires: the first item is open again to me.
    Assignment.objects.filter(pk=other.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert selectors.annotator_progress(study=study, annotator=me) == {"done": 1, "total": 4}
    # Items of another study never count.
    toy_study(tmp_path, n=5, overlap=2, slug="elsewhere")
    assert selectors.annotator_progress(study=study, annotator=me) == {"done": 1, "total": 4}


def test_progress_is_plain_integers_that_json_can_carry(tmp_path):
    study = toy_study(tmp_path, n=2, overlap=1)
    (me,) = annotators_create(study, 1)
    services.rating_submit(assignment=services.assignment_next(study=study, annotator=me), answers=answer_all())
    progress = selectors.annotator_progress(study=study, annotator=me)
    assert json.loads(json.dumps(progress)) == {"done": 1, "total": 2}
    assert all(type(n) is int for n in progress.values())
