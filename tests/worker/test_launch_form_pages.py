"""Launch forms a new user can fill: proper labels, help on every field, the only dataset
preselected, and each error next to its field."""
import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from modeling.models import Dataset
from worker.forms import LAUNCH_FORMS
from worker.labels import CONFIG_TERMS, KIND_TERMS, TERMS
from worker.models import Job


@pytest.fixture
def staff_client(client, db):
    client.force_login(User.objects.create_user("admin", password="pw", is_staff=True))
    return client


@pytest.mark.parametrize("kind", list(LAUNCH_FORMS))
def test_every_field_has_a_worded_label_and_help(db, kind):
    form = LAUNCH_FORMS[kind]()
    for name, field in form.fields.items():
        bound = form[name]
        assert bound.label and bound.label[0].isupper() and not bound.label.endswith(":"), (kind, name, bound.label)
        assert name in TERMS or name in CONFIG_TERMS or name in KIND_TERMS.get(kind, {}), \
            f"{kind}.{name} is not named in worker/labels.py"
        assert field.help_text.strip(), f"{kind}.{name} has no help text"
        assert "<" not in field.help_text, f"{kind}.{name}: Django renders help as HTML, so '<...>' vanishes"


def test_the_pipeline_form_says_learning_rate_not_lr(staff_client):
    page = staff_client.get(reverse("worker:job_launch", args=["pipeline"])).content.decode()
    assert ">Learning rate</label>" in page and "Lr:" not in page and ">Lr<" not in page


def test_the_only_dataset_is_preselected_and_two_are_not(staff_client):
    Dataset.objects.create(name="demo", kind="jsonl")
    page = staff_client.get(reverse("worker:job_launch", args=["pipeline"])).content.decode()
    assert '<option value="demo" selected>' in page
    Dataset.objects.create(name="spc", kind="spc")
    page = staff_client.get(reverse("worker:job_launch", args=["pipeline"])).content.decode()
    assert '<option value="demo" selected>' not in page


def test_a_link_can_preselect_a_field(staff_client):
    Dataset.objects.create(name="demo", kind="jsonl")
    Dataset.objects.create(name="spc", kind="spc")
    page = staff_client.get(reverse("worker:job_launch", args=["augment"]) + "?dataset=spc").content.decode()
    assert '<option value="spc" selected>' in page


def test_errors_sit_in_their_fields_group(staff_client):
    Dataset.objects.create(name="demo", kind="jsonl")
    response = staff_client.post(reverse("worker:job_launch", args=["train"]),
                                 {"dataset": "demo", "method": "postgrag", "backbone": "smollm2", "epochs": 0,
                                  "batch_size": 4, "lr": 1e-4, "alpha": 0.5, "beta": 0.01})
    page = response.content.decode()
    assert "Nothing was launched" in page
    group = page[page.index('id="id_epochs_group"'):]
    group = group[:group.index('<div class="field')] if '<div class="field' in group else group
    assert "greater than or equal to 1" in group and 'name="epochs"' in group
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_the_study_launch_form_holds_the_study_planner(client):
    """Issue 20: the planner sits on the study creation form, not only behind a link."""
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("planner-staff", password="pw-x-12345", is_staff=True))
    page = client.get("/jobs/launch/study/").content.decode()
    assert "Study size" in page and 'aria-label="Study planner"' in page and 'name="gap"' in page
