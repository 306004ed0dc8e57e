"""The annotator pages: blinded items, all-or-nothing answers, htmx swap and plain-form fallback.

Runs against the real services (assignment, rating) on the configured database.
"""
import json
import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from annotation.models import Assignment, Item, Rating, Study
from annotation.services import annotator_add, study_import_jsonl

BASELINE, CHALLENGER = "PreSFT-Hist-secretname", "PostGRAG-secretname"


def _write_study(path, n=3, generic=True):
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({
                "key": f"spc-test-{i:04d}",
                "persona": f"I have {i + 2} cats. I love hiking.",
                "history": [{"role": "user", "text": f"Hello there {i}"}, {"role": "agent", "text": "Hi! How are you?"},
                            {"role": "user", "text": "Tired, long walk today."}],
                "generic_response": "That sounds tiring, get some rest." if generic else "",
                "responses": {BASELINE: f"Rest well tonight ({i}).", CHALLENGER: f"Your {i + 2} cats will cheer you up!"},
            }) + "\n")
    return path


@pytest.fixture
def study(db, tmp_path):
    study, _ = study_import_jsonl(path=_write_study(tmp_path / "s.jsonl"), slug="pair", baseline=BASELINE, challenger=CHALLENGER)
    Study.objects.filter(pk=study.pk).update(instructions="Read **carefully**.\n\n<script>alert('x')</script>")
    study.refresh_from_db()
    return study


@pytest.fixture
def annotator(study):
    return annotator_add(username="ann", password="pw-ann-123", study=study)


@pytest.fixture
def ann_client(client, annotator, study):
    client.force_login(annotator)
    # Read the instructions once, as every annotator must before their first item.
    client.post(reverse("annotation:study_instructions", args=[study.slug]))
    return client


def _full_answers(choice="A", confidence=4, keys=("q1", "q2", "q3", "q4")):
    data = {}
    for k in keys:
        data[f"{k}-choice"] = choice
        data[f"{k}-confidence"] = str(confidence)
    return data


def _action(html: str) -> str:
    match = re.search(r'<form id="rating-form"[^>]*action="([^"]+)"', html)
    assert match, "no rating form on the page"
    return match.group(1)


def test_instructions_come_first_and_are_sanitised(client, annotator, study):
    client.force_login(annotator)
    response = client.get(reverse("annotation:annotate", args=[study.slug]))
    assert response.status_code == 302 and response.url == reverse("annotation:study_instructions", args=[study.slug])
    page = client.get(response.url).content.decode()
    assert "<strong>carefully</strong>" in page
    assert "<script>alert" not in page
    response = client.post(reverse("annotation:study_instructions", args=[study.slug]))
    assert response.url == reverse("annotation:annotate", args=[study.slug])
    page = client.get(response.url).content.decode()
    assert "Response A" in page and "Response B" in page and "0 of 3 done" in page
    # Staff change the instructions: the annotator reads them again before the next item.
    Study.objects.filter(pk=study.pk).update(instructions_version=2)
    assert client.get(reverse("annotation:annotate", args=[study.slug])).status_code == 302


def test_item_page_shows_context_and_all_four_questions(ann_client, study):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    assert "I love hiking." in page and "Tired, long walk today." in page
    assert 'class="role">Agent<' in page and 'class="role">User<' in page
    assert "That sounds tiring, get some rest." in page and "Generic response" in page
    for q in study.questions.all():
        assert q.text in page
    assert page.count('type="radio"') == 4 * (3 + 5) + len(Assignment.SkipReason.choices)  # answers, skip reasons
    assert page.count("<legend") >= 4 * 3  # each question and its two radio groups are labelled
    assert "Keyboard shortcuts" in page


def test_generic_panel_hidden_when_study_has_none(client, db, tmp_path):
    study, _ = study_import_jsonl(path=_write_study(tmp_path / "g.jsonl", n=1, generic=False), slug="nogen",
                                  baseline=BASELINE, challenger=CHALLENGER)
    client.force_login(annotator_add(username="ann2", password="pw-ann-123", study=study))
    client.post(reverse("annotation:study_instructions", args=[study.slug]))
    page = client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    assert "Response A" in page and "Generic response" not in page


def test_page_reveals_no_system_name_key_or_side(ann_client, study, annotator):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    assignment = Assignment.objects.get(annotator=annotator, status=Assignment.Status.RESERVED)
    item = assignment.item
    for secret in ["secretname", item.key, "baseline", "challenger"]:
        assert secret.lower() not in page.lower(), secret
    # No URL on the page carries a database id; the item is addressed by its opaque public id.
    urls = re.findall(r'(?:href|action|hx-post|hx-get|src)="([^"]*)"', page)
    segments = {seg for url in urls for seg in url.split("/")}
    assert str(item.pk) not in segments and str(assignment.pk) not in segments
    assert _action(page) == reverse("annotation:item_rate", args=[study.slug, item.public_id])
    # The DOM order is always A then B; which text is A follows the stored side.
    a_text, b_text = (
        (item.baseline_response, item.challenger_response) if assignment.baseline_side == "A"
        else (item.challenger_response, item.baseline_response)
    )
    assert page.index("Response A") < page.index(a_text) < page.index("Response B") < page.index(b_text)
    # Reloading shows the same item in the same order (never reshuffled).
    again = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    assert _action(again) == _action(page) and again.index(a_text) < again.index(b_text)


def test_missing_answers_are_shown_per_question_and_nothing_is_stored(ann_client, study, annotator):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    data = _full_answers(keys=("q1", "q2"))
    data["q4-choice"] = "B"  # q3 missing entirely, q4 lacks its confidence
    response = ann_client.post(_action(page), data)
    assert response.status_code == 422
    body = response.content.decode()
    assert "Nothing was saved" in body
    assert "Value: choose Response A, Response B or Similar." in body
    assert "Balance: choose a confidence from 1 to 5." in body
    assert 'id="q3-question"' in body and 'class="question invalid"' in body
    assert "Naturalness: choose" not in body
    # What was answered stays checked so the annotator only adds what is missing.
    assert re.search(r'name="q4-choice" value="B" checked', body)
    assert Rating.objects.count() == 0
    assert Assignment.objects.get(annotator=annotator).status == Assignment.Status.RESERVED
    # A confidence outside 1-5 is refused the same way.
    data = _full_answers()
    data["q2-confidence"] = "9"
    assert ann_client.post(_action(page), data).status_code == 422
    assert Rating.objects.count() == 0


def test_htmx_submit_stores_canonical_ratings_and_swaps_in_the_next_item(ann_client, study, annotator):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    first = Assignment.objects.get(annotator=annotator)
    response = ann_client.post(_action(page), {**_full_answers("A", 5), "q3-choice": "S"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    fragment = response.content.decode()
    assert "<html" not in fragment and fragment.lstrip().startswith('<section id="annotate"')
    assert "1 of 3 done" in fragment
    assert _action(fragment) != _action(page)
    ratings = {r.question: r for r in Rating.objects.filter(item=first.item, annotator=annotator)}
    assert len(ratings) == 4
    expected = "baseline" if first.baseline_side == "A" else "challenger"
    assert ratings["q1"].choice == expected and ratings["q1"].shown_choice == "A" and ratings["q1"].confidence == 5
    assert ratings["q3"].choice == "similar"
    assert all(r.baseline_side == first.baseline_side for r in ratings.values())


def test_htmx_errors_come_back_as_a_fragment(ann_client, study):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    response = ann_client.post(_action(page), {}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    fragment = response.content.decode()
    assert "<html" not in fragment and "Nothing was saved" in fragment
    # The page's htmx config swaps 422 responses in (htmx leaves 4xx alone by default).
    assert '"code":"422","swap":true' in page
    assert Rating.objects.count() == 0


def test_plain_form_fallback_redirects_and_a_repeated_submit_stores_nothing_twice(ann_client, study, annotator):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    action = _action(page)
    response = ann_client.post(action, _full_answers("B", 3))
    assert response.status_code == 302 and response.url == reverse("annotation:annotate", args=[study.slug])
    assert Rating.objects.filter(annotator=annotator).count() == 4
    again = ann_client.post(action, _full_answers("B", 3))  # double click / retry
    assert again.status_code == 302
    assert Rating.objects.filter(annotator=annotator).count() == 4
    assert Assignment.objects.filter(annotator=annotator, status=Assignment.Status.COMPLETED).count() == 1
    nxt = ann_client.get(response.url).content.decode()
    assert "1 of 3 done" in nxt and _action(nxt) != action


def test_all_done_page_after_the_last_item(ann_client, study, annotator):
    url = reverse("annotation:annotate", args=[study.slug])
    for _ in range(3):
        ann_client.post(_action(ann_client.get(url).content.decode()), _full_answers("S", 2))
    page = ann_client.get(url).content.decode()
    assert "All done" in page and "3 of 3 done" in page and 'id="rating-form"' not in page
    assert Rating.objects.filter(annotator=annotator).count() == 12


def test_another_studys_item_is_404(ann_client, study, annotator, tmp_path):
    other, _ = study_import_jsonl(path=_write_study(tmp_path / "o.jsonl", n=1), slug="other",
                                  baseline=BASELINE, challenger=CHALLENGER)
    annotator_add(username=annotator.username, password=None, study=other)
    ann_client.post(reverse("annotation:study_instructions", args=[other.slug]))
    other_page = ann_client.get(reverse("annotation:annotate", args=[other.slug])).content.decode()
    other_id = other.items.get().public_id
    assert other_id in _action(other_page)
    wrong = reverse("annotation:item_rate", args=[study.slug, other_id])
    assert ann_client.get(wrong).status_code == 404
    assert ann_client.post(wrong, _full_answers()).status_code == 404
    assert Rating.objects.count() == 0
    # A study the user does not annotate is 404 too, and so is an item never assigned to them.
    outsider = Study.objects.create(slug="closed", baseline_name="x", challenger_name="y")
    assert ann_client.get(reverse("annotation:annotate", args=[outsider.slug])).status_code == 404
    unassigned = study.items.exclude(assignments__annotator=annotator).first().public_id
    assert ann_client.post(reverse("annotation:item_rate", args=[study.slug, unassigned]), _full_answers()).status_code == 404


def test_anonymous_users_go_to_login(client, study):
    response = client.get(reverse("annotation:annotate", args=[study.slug]))
    assert response.status_code == 302 and reverse("login") in response.url


def test_study_list_and_home_link_to_the_annotator_pages(ann_client, study):
    listing = ann_client.get(reverse("annotation:study_list")).content.decode()
    assert reverse("annotation:annotate", args=[study.slug]) in listing and "0 of 3 done" in listing
    home = ann_client.get(reverse("home")).content.decode()
    assert reverse("annotation:annotate", args=[study.slug]) in home


# --- Staff -----------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, db):
    client.force_login(User.objects.create_user("boss", password="pw", is_staff=True))
    return client


def test_staff_study_page_lists_items_and_annotator_progress(staff_client, study, annotator):
    other = Item.objects.filter(study=study).order_by("key").first()
    page = staff_client.get(reverse("annotation:study_manage", args=[study.slug])).content.decode()
    assert other.key in page and BASELINE in page and "ann" in page and "0 of 3" in page
    assert page.count("<tr class=\"state-open\">") == 3


def test_staff_pages_are_staff_only(ann_client, study):
    assert ann_client.get(reverse("annotation:study_manage", args=[study.slug])).status_code == 403
    assert ann_client.post(reverse("annotation:study_instructions_edit", args=[study.slug]), {"instructions": "x"}).status_code == 403


def test_editing_instructions_bumps_the_version_only_on_change(staff_client, study):
    url = reverse("annotation:study_instructions_edit", args=[study.slug])
    staff_client.post(url, {"instructions": "New **rules**."})
    study.refresh_from_db()
    assert study.instructions == "New **rules**." and study.instructions_version == 2
    staff_client.post(url, {"instructions": "New **rules**."})
    study.refresh_from_db()
    assert study.instructions_version == 2


def test_editing_questions_saves_text_and_refuses_empty(staff_client, study):
    questions = list(study.questions.all())
    data = {"questions-TOTAL_FORMS": str(len(questions)), "questions-INITIAL_FORMS": str(len(questions))}
    for i, q in enumerate(questions):
        data.update({f"questions-{i}-id": str(q.pk), f"questions-{i}-label": q.label, f"questions-{i}-text": q.text})
    data["questions-0-text"] = "Which reply reads better?"
    data["questions-1-text"] = ""
    url = reverse("annotation:study_questions_edit", args=[study.slug])
    response = staff_client.post(url, data)
    assert response.status_code == 422 and "This field is required" in response.content.decode()
    assert study.questions.get(key="q1").text == questions[0].text  # nothing half-saved
    data["questions-1-text"] = questions[1].text
    assert staff_client.post(url, data).status_code == 302
    assert study.questions.get(key="q1").text == "Which reply reads better?"


def test_staff_add_an_annotator_who_can_then_log_in(staff_client, client, study):
    url = reverse("annotation:study_annotator_add", args=[study.slug])
    response = staff_client.post(url, {"username": "newbie", "password": "s3cret-pass"})
    assert response.status_code == 302
    assert study.annotators.filter(username="newbie").exists()
    assert staff_client.post(url, {"username": " ", "password": ""}).status_code == 422
    staff_client.logout()
    assert client.login(username="newbie", password="s3cret-pass")
    assert client.get(reverse("annotation:study_instructions", args=[study.slug])).status_code == 200


def test_a_late_submit_after_the_item_went_to_someone_else_stores_nothing_and_moves_on(client, db, tmp_path):
    study, _ = study_import_jsonl(path=_write_study(tmp_path / "late.jsonl", n=2), slug="late",
                                  baseline=BASELINE, challenger=CHALLENGER, overlap=1)
    slow, quick = (annotator_add(username=u, password="pw-ann-123", study=study) for u in ("slow", "quick"))
    client.force_login(slow)
    client.post(reverse("annotation:study_instructions", args=[study.slug]))
    page = client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    mine = Assignment.objects.get(annotator=slow)
    # The reservation runs out, and the only slot of the item goes to another annotator.
    Assignment.objects.filter(pk=mine.pk).update(expires_at=mine.reserved_at)
    from annotation.services import Answer, assignment_next, rating_submit

    taken = assignment_next(study=study, annotator=quick)
    assert taken.item_id == mine.item_id
    rating_submit(assignment=taken, answers=[Answer(q, "A", 3) for q in ("q1", "q2", "q3", "q4")])
    response = client.post(_action(page), _full_answers(), headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "went to another annotator" in body and _action(body) != _action(page)
    assert Rating.objects.filter(annotator=slow).count() == 0
    assert Rating.objects.filter(item=mine.item).count() == 4  # still one rater: the overlap holds


def test_an_htmx_request_after_the_session_ended_reloads_to_the_login_page(client, study):
    url = reverse("annotation:item_rate", args=[study.slug, study.items.first().public_id])
    response = client.post(url, {}, headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver/studies/{study.slug}/annotate/"})
    assert response.status_code == 200 and response.headers["HX-Redirect"].startswith(reverse("login"))
    assert "annotate" in response.headers["HX-Redirect"]
