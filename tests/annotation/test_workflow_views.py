"""The annotator's workflow pages (issue 21) on the real services: previous item and change,
done list, skip, flag, comment, closed study read-only, instructions once per version."""
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from annotation.models import COMMENT_MAX_CHARS, Assignment, Flag, Rating, Study
from annotation.services import annotator_add, study_update
from tests.annotation import test_views
from tests.annotation.test_views import _action, _full_answers

# The annotator pages' fixtures: a three-item study, its annotator, their logged-in client.
study, annotator, ann_client = test_views.study, test_views.annotator, test_views.ann_client

SECRETS = ("secretname", "baseline", "challenger")


def _checked(page: str) -> dict:
    """The answers checked on a page: {"q1-choice": "A", "q1-confidence": "4", ...}."""
    return dict(re.findall(r'name="(q\d-(?:choice|confidence))" value="(\w+)" checked', page))


def _blinded(page: str, study: Study) -> None:
    for secret in SECRETS + tuple(study.items.values_list("key", flat=True)):
        assert secret.lower() not in page.lower(), secret


@pytest.fixture
def rated_two(ann_client, study, annotator):
    """The annotator rated two items (the first with a comment) and holds the third."""
    for i, choice in enumerate(("A", "B")):
        page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
        data = {**_full_answers(choice, 4 - i), "comment": "first <b>one</b>" if i == 0 else ""}
        assert ann_client.post(_action(page), data).status_code == 302
    return list(Assignment.objects.filter(annotator=annotator, status="completed").order_by("reserved_at"))


def test_previous_item_shows_the_answers_and_a_change_is_appended(ann_client, study, rated_two):
    first, second = rated_two
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    previous = re.search(r'<a href="([^"]+)" rel="prev">Previous item</a>', page).group(1)
    assert previous == reverse("annotation:item_rate", args=[study.slug, second.item.public_id])
    page = ann_client.get(previous).content.decode()
    assert _checked(page) == {**{f"q{i}-choice": "B" for i in range(1, 5)}, **{f"q{i}-confidence": "3" for i in range(1, 5)}}
    assert "Save changes" in page and "Back to your current item" in page and "Skip the item" not in page
    # ...and from there, the one before it, with its comment escaped in the textarea.
    before = re.search(r'<a href="([^"]+)" rel="prev">', page).group(1)
    page = ann_client.get(before).content.decode()
    assert "first &lt;b&gt;one&lt;/b&gt;</textarea>" in page and "<b>one</b>" not in page
    _blinded(page, study)
    response = ann_client.post(before, {**_full_answers("A", 4), "q2-choice": "S", "comment": "changed my mind"})
    assert response.status_code == 302 and response.url == reverse("annotation:annotate", args=[study.slug])
    q2 = Rating.objects.filter(item=first.item, question="q2").order_by("created_at", "pk")
    assert [(r.shown_choice, r.is_current) for r in q2] == [("A", False), ("S", True)]
    assert set(Rating.objects.filter(item=first.item, is_current=True).values_list("comment", flat=True)) == {
        "changed my mind"}


def test_done_list_links_rated_items_names_skips_and_reveals_no_system(ann_client, study, rated_two):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    skip = reverse("annotation:item_skip", args=[study.slug, re.search(r"/items/([^/]+)/", _action(page)).group(1)])
    assert ann_client.post(skip, {"reason": "offensive"}).status_code == 302
    page = ann_client.get(reverse("annotation:done_items", args=[study.slug])).content.decode()
    for a in rated_two:
        assert reverse("annotation:item_rate", args=[study.slug, a.item.public_id]) in page
    assert "Skipped: The content is offensive" in page and "Tired, long walk today." in page
    _blinded(page, study)


def test_an_item_never_given_is_404_and_a_skipped_one_goes_to_the_done_list(ann_client, study, annotator):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    mine = Assignment.objects.get(annotator=annotator)
    other = study.items.exclude(pk=mine.item_id).first()
    for name in ("item_rate", "item_skip", "item_flag"):
        url = reverse(f"annotation:{name}", args=[study.slug, other.public_id])
        assert ann_client.get(url).status_code in (404, 405) and ann_client.post(url, {"reason": "broken"}).status_code == 404
    skip = _action(page) + "skip/"
    assert ann_client.post(skip, {}).status_code == 422  # no reason: refused, says why
    assert ann_client.post(skip, {"reason": "because"}).status_code == 422
    assert ann_client.post(skip, {"reason": ["broken", "offensive"]}).status_code == 400
    assert Assignment.objects.get(pk=mine.pk).status == "reserved"
    response = ann_client.post(skip, {"reason": "broken", **_full_answers()}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Item skipped" in response.content.decode()
    assert Assignment.objects.get(pk=mine.pk).status == "skipped" and not Rating.objects.exists()
    response = ann_client.get(_action(page))
    assert response.status_code == 302 and response.url == reverse("annotation:done_items", args=[study.slug])
    assert ann_client.post(_action(page), _full_answers()).status_code == 302
    assert not Rating.objects.exists()


def test_a_skipped_item_goes_to_another_annotator(ann_client, client, study, annotator):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    item = Assignment.objects.get(annotator=annotator).item
    Study.objects.filter(pk=study.pk).update(overlap=1)
    ann_client.post(_action(page) + "skip/", {"reason": "cannot_judge"})
    other = annotator_add(username="ann-b", password="pw-ann-123", study=study)
    second = Client()
    second.force_login(other)
    second.post(reverse("annotation:study_instructions", args=[study.slug]))
    page_b = second.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    assert _action(page_b) == reverse("annotation:item_rate", args=[study.slug, item.public_id])


def test_a_flag_reaches_staff_escaped_and_staff_resolve_it(ann_client, study, annotator):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    flag_url = _action(page) + "flag/"
    assert ann_client.post(flag_url, {"flag_comment": "  "}).status_code == 422
    assert ann_client.post(flag_url, {"flag_comment": "x" * (COMMENT_MAX_CHARS + 1)}).status_code == 422
    # htmx: the item comes back with the answers typed so far still checked.
    response = ann_client.post(flag_url, {"flag_comment": "<script>alert(1)</script> broken", **_full_answers("S", 2)},
                               HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and "staff will look at this item" in body
    assert _checked(body)["q1-choice"] == "S" and "<script>alert(1)" not in body
    assert Assignment.objects.get(annotator=annotator).status == "reserved"
    staff = Client()
    staff.force_login(User.objects.create_user("boss", password="pw", is_staff=True))
    manage = staff.get(reverse("annotation:study_manage", args=[study.slug])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; broken" in manage and "<script>alert(1)" not in manage
    flag = Flag.objects.get()
    assert ann_client.post(reverse("annotation:flag_resolve", args=[study.slug, flag.pk])).status_code in (302, 403)
    assert Flag.objects.get().resolved_at is None  # annotators cannot resolve
    assert staff.post(reverse("annotation:flag_resolve", args=[study.slug, flag.pk])).status_code == 302
    assert Flag.objects.get().resolved_by.username == "boss"
    assert "No open flags" in staff.get(reverse("annotation:study_manage", args=[study.slug])).content.decode()


def test_a_comment_over_the_limit_is_refused_and_a_comment_is_stored_with_the_answers(ann_client, study):
    page = ann_client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
    response = ann_client.post(_action(page), {**_full_answers(), "comment": "y" * (COMMENT_MAX_CHARS + 1)})
    assert response.status_code == 422 and f"at most {COMMENT_MAX_CHARS} characters" in response.content.decode()
    assert not Rating.objects.exists()
    ann_client.post(_action(page), {**_full_answers(), "comment": "  RTL: שלום עולם  "})
    assert set(Rating.objects.values_list("comment", flat=True)) == {"RTL: שלום עולם"}


def test_a_closed_study_shows_answers_read_only_and_refuses_changes(ann_client, study, rated_two):
    first, _ = rated_two
    study_update(study=study, is_open=False)
    url = reverse("annotation:item_rate", args=[study.slug, first.item.public_id])
    page = ann_client.get(url).content.decode()
    assert "This study is closed" in page and "<fieldset class=\"plain\" disabled>" in page
    assert "Save changes" not in page and _checked(page)["q1-choice"] == "A"
    count = Rating.objects.count()
    response = ann_client.post(url, _full_answers("S"))
    assert response.status_code == 409 and "closed" in response.content.decode()
    assert Rating.objects.count() == count
    done = ann_client.get(reverse("annotation:done_items", args=[study.slug])).content.decode()
    assert "This study is closed" in done and "See your answers" in done


def test_instructions_are_asked_once_per_version_not_once_per_login(client, study, annotator):
    annotate = reverse("annotation:annotate", args=[study.slug])
    client.force_login(annotator)
    assert client.get(annotate).status_code == 302
    client.post(reverse("annotation:study_instructions", args=[study.slug]))
    client.logout()
    client.force_login(annotator)  # a new session
    page = client.get(annotate)
    assert page.status_code == 200
    # The instructions reopen in a panel on the annotate page, sanitised.
    body = page.content.decode()
    assert 'id="instructions-panel"' in body and "<strong>carefully</strong>" in body and "<script>alert" not in body
    study_update(study=study, instructions="Version two.")
    assert client.get(annotate).status_code == 302
