"""Staff open a study to its annotators from its page, after review (review finding: only the admin could)."""
import pytest
from django.contrib.auth.models import User
from django.test import Client

from annotation import services
from annotation.giveaways import study_check_flagged
from annotation.models import Study


@pytest.fixture
def study(db):
    study = services.study_create(slug="s-open", baseline_name="Base", challenger_name="Chal")
    services.study_items_add(study=study, rows=[("items[0]", {
        "key": "k1", "persona": "I love tea.", "history": [{"role": "user", "text": "Hi"}],
        # The generic response speaks as an AI: shown beside both sides, it cannot unblind the study.
        "generic_response": "As an AI language model, I enjoy tea.", "baseline_response": "I like tea.",
        "challenger_response": "Tea is lovely.", "kind": "normal", "gold_answers": {}})])
    study.is_open = False
    study.save()
    return study


def test_staff_open_and_close_a_study_from_its_page(study):
    staff = User.objects.create_user("staffer", password="pw-staff-123", is_staff=True)
    web = Client()
    web.force_login(staff)
    page = web.get(f"/studies/{study.slug}/manage/").content.decode()
    assert "Open to annotators" in page
    assert web.post(f"/studies/{study.slug}/manage/open/", {"is_open": "1"}).status_code == 302
    assert Study.objects.get(pk=study.pk).is_open
    assert "Close to annotators" in web.get(f"/studies/{study.slug}/manage/").content.decode()
    web.post(f"/studies/{study.slug}/manage/open/", {"is_open": "0"})
    assert not Study.objects.get(pk=study.pk).is_open
    assert web.post(f"/studies/{study.slug}/manage/open/", {"is_open": "yes"}).status_code == 400


def test_annotators_cannot_open_a_study(study):
    annotator = User.objects.create_user("ann", password="pw-ann-123")
    study.annotators.add(annotator)
    web = Client()
    web.force_login(annotator)
    assert web.post(f"/studies/{study.slug}/manage/open/", {"is_open": "1"}).status_code == 403
    assert not Study.objects.get(pk=study.pk).is_open


def test_a_giveaway_in_the_generic_response_does_not_keep_the_study_closed(study):
    assert study_check_flagged(study=study)["giveaways"] == 0
