"""The new-user review's generic UI findings (uifix), on the real database and views: the blinding
check's one rule, the staff study page's top bar, the styled 403/404/500 pages, and the "Save
changes" redirect of a plain (no-JavaScript) form."""
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.views.defaults import server_error

from annotation import services
from annotation.giveaways import study_check_flagged, study_giveaway_report
from annotation.models import Assignment

GENERIC = "As a chatbot, I enjoy tea."  # the demo's shared generic response that the page flagged in red


def _study(challenger_response: str = "Tea is lovely.", slug: str = "ui"):
    study = services.study_create(slug=slug, baseline_name="Base", challenger_name="Chal")
    services.study_items_add(study=study, rows=[("items[0]", {
        "key": "k1", "persona": "I love tea.", "history": [{"role": "user", "text": "Hi"}],
        "generic_response": GENERIC, "baseline_response": "I like tea.",
        "challenger_response": challenger_response, "kind": "normal", "gold_answers": {}})])
    return study


def _staff_page(study) -> str:
    web = Client()
    web.force_login(User.objects.create_user(f"staff-{study.slug}", password="pw-staff-123", is_staff=True))
    response = web.get(f"/studies/{study.slug}/manage/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_a_flagged_generic_response_is_listed_but_not_called_a_giveaway_on_the_page_or_at_creation():
    study = _study()
    report = study_giveaway_report(study=study)
    assert [f["side"] for f in report["flags"]] == ["generic_response"]  # still listed for staff
    assert report["unblinding"] == [] and study_check_flagged(study=study)["giveaways"] == 0
    page = _staff_page(study)
    assert "give their author away" not in page and 'class="error"' not in page
    assert 'id="giveaways-generic"' in page and "cannot tell annotators which side is which" in page


@pytest.mark.django_db
def test_the_page_and_the_creation_check_count_the_same_giveaways():
    study = _study(challenger_response="As an AI language model, I do not drink tea.")
    report = study_giveaway_report(study=study)
    n = study_check_flagged(study=study)["giveaways"]
    assert n >= 1 and len(report["unblinding"]) == n and report["unblinding_items"] == 1
    page = _staff_page(study)
    assert re.search(rf'class="error" id="giveaways-unblinding">{n} text\(s\) in 1 item\(s\) give their author away', page)


@pytest.mark.django_db
def test_the_staff_study_page_lists_studies_once_in_the_top_bar():
    page = _staff_page(_study())
    topbar = page.split('<header class="topbar">', 1)[1].split("</header>", 1)[0]
    assert topbar.count(">Studies</a>") == 1, topbar
    # A staff account without model permissions has an empty admin: no Admin link to it.
    assert ">Admin</a>" not in topbar


@pytest.mark.django_db
def test_a_superuser_keeps_the_admin_link():
    web = Client()
    web.force_login(User.objects.create_user("root", password="pw-root-1234", is_staff=True, is_superuser=True))
    assert ">Admin</a>" in web.get("/studies/").content.decode()


@pytest.mark.django_db
def test_403_and_404_pages_use_the_layout_and_link_home():
    study = _study()
    web = Client()
    web.force_login(User.objects.create_user("ann", password="pw-ann-1234"))
    forbidden = web.get(f"/studies/{study.slug}/manage/")
    assert forbidden.status_code == 403
    html = forbidden.content.decode()
    assert "You cannot open this page" in html and 'class="topbar"' in html and 'href="/"' in html
    assert "grag.css" in html
    missing = web.get("/no-such-page/")
    assert missing.status_code == 404
    assert "Page not found" in missing.content.decode() and 'class="topbar"' in missing.content.decode()


@pytest.mark.django_db
def test_the_500_page_renders_without_a_request_context():
    response = server_error(RequestFactory().get("/"))
    html = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in html and 'href="/"' in html and "grag.css" in html


@pytest.mark.django_db
def test_save_changes_on_an_earlier_item_redirects_to_the_current_item_with_a_saved_message():
    study = _study()
    services.study_items_add(study=study, rows=[("items[1]", {
        "key": "k2", "persona": "I love tea.", "history": [{"role": "user", "text": "Hi"}], "generic_response": "",
        "baseline_response": "Green.", "challenger_response": "Black.", "kind": "normal", "gold_answers": {}})])
    study.is_open = True
    study.save()
    user = services.annotator_add(username="ann2", password="pw-ann-1234", study=study)
    web = Client()
    web.force_login(user)
    web.post(f"/studies/{study.slug}/")  # the instructions, read
    web.get(f"/studies/{study.slug}/annotate/")
    first = Assignment.objects.get(annotator=user, status="reserved")
    answers = {f"{q}-{f}": v for q in ("q1", "q2", "q3", "q4") for f, v in (("choice", "A"), ("confidence", "4"))}
    url = f"/studies/{study.slug}/items/{first.item.public_id}/"
    assert web.post(url, answers).status_code == 302
    response = web.post(url, {**answers, "q1-choice": "S"}, follow=True)  # Save changes on the earlier item
    assert response.redirect_chain[-1][0] == f"/studies/{study.slug}/annotate/"
    assert "Your changes to the earlier item are saved" in response.content.decode()
    # htmx: the next item in place, and the address bar moves to the annotate URL.
    swapped = web.post(url, {**answers, "q1-choice": "B"}, HTTP_HX_REQUEST="true")
    assert swapped.status_code == 200 and swapped["HX-Push-Url"] == f"/studies/{study.slug}/annotate/"
    assert "Your changes to the earlier item are saved" in swapped.content.decode()
