"""Security review, finding 4: a staff user launching an import from the web can read only files
under IMPORT_ROOTS, cannot tell whether a path outside them exists, and an importer's error quotes
no more of a file than short column names."""
import pytest
from django.contrib.auth.models import User

from modeling.importers.base import ImportFileError, read_csv
from modeling.importers.service import DatasetImportError, dataset_import, import_roots
from worker.models import Job


@pytest.fixture
def staff_client(client, db):
    client.force_login(User.objects.create_user("staff", password="pw", is_staff=True))
    return client


def _launch(client, path):
    return client.post("/jobs/launch/import/", {"kind": "ed", "path": str(path)})


def test_paths_outside_import_roots_are_refused_alike_whether_or_not_they_exist(staff_client, settings, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    settings.IMPORT_ROOTS = [root]
    outside = tmp_path / "secret.csv"
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "link.csv").symlink_to(outside)  # a link inside a root that points out of it
    for path in ["/etc/passwd", outside, tmp_path / "missing.csv", root / "link.csv", root / ".." / "secret.csv"]:
        response = _launch(staff_client, path)
        assert response.status_code == 200, path  # the form again, with its error
        body = response.content.decode()
        assert "outside the folders imports may read" in body, path
        assert "does not exist" not in body and "root:x" not in body
    assert Job.objects.count() == 0


def test_a_path_inside_a_root_still_launches_and_a_missing_one_says_so(staff_client, settings, tmp_path):
    settings.IMPORT_ROOTS = [tmp_path]
    assert "does not exist on this host" in _launch(staff_client, tmp_path / "nope.csv").content.decode()
    good = tmp_path / "valid.csv"
    good.write_text("conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n")
    response = _launch(staff_client, good)
    assert response.status_code == 302
    assert Job.objects.get().params["path"] == str(good.resolve())


def test_the_default_roots_are_data_dir_and_the_projects_data_folder(settings):
    roots = import_roots()
    assert settings.DATA_DIR.resolve() in roots and (settings.BASE_DIR / "data").resolve() in roots


@pytest.mark.django_db
def test_the_import_service_refuses_a_path_outside_the_roots_it_is_given(tmp_path):
    # The worker's import job passes import_roots(); the job's params need not come from the form.
    with pytest.raises(DatasetImportError, match="outside the folders"):
        dataset_import(kind="ed", path="/etc/passwd", roots=[tmp_path])


def test_a_missing_column_error_quotes_short_column_names_only(tmp_path):
    path = tmp_path / "wide.csv"
    names = [f"c{i}_" + "x" * 100 for i in range(30)]
    path.write_text(",".join(names) + "\n")
    with pytest.raises(ImportFileError) as caught:
        read_csv(path, ["conv_id"])
    message = str(caught.value)
    assert "'conv_id'" in message and "10 more" in message
    assert "c0_" + "x" * 37 + "..." in message and "x" * 41 not in message
    assert "c19_" in message and "c20_" not in message


@pytest.mark.slow
def test_an_import_job_outside_the_roots_fails_on_the_real_worker_without_reading_the_file(celery_worker_process):
    # A job's params need not come from the launch form: the worker checks the roots again.
    from tests.conftest import wait_for
    from worker.services import job_launch

    job = job_launch(kind=Job.Kind.IMPORT, task="worker.import_dataset", params={"kind": "ed", "path": "/etc/passwd"})
    done = wait_for(lambda: Job.objects.filter(pk=job.pk).exclude(
        status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).first(), timeout=120)
    assert done.status == Job.Status.FAILED
    assert "outside the folders imports may read" in done.error and "root:" not in done.error
