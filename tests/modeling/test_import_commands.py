"""import_dataset's idempotency, --limit and --split, the seeded split, and fetch_dataset."""
import functools
import http.server
import io
import json
import tarfile
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from modeling.importers.service import dataset_import
from modeling.models import Conversation, Dataset, Sample

from .test_import_formats import ED_HEADER, ED_ROWS

pytestmark = pytest.mark.django_db


def run(command: str, *args) -> dict:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return json.loads(out.getvalue())


def conversation(i: int, split: str | None = None, reply: str = "Fine, thanks.") -> dict:
    obj = {"id": f"c{i}", "agent_persona": f"I am agent {i}.", "turns": [
        {"role": "user", "text": f"Hello {i}"}, {"role": "agent", "text": reply},
        {"role": "user", "text": "Good."}, {"role": "agent", "text": f"Bye {i}"},
    ]}
    if split:
        obj["split"] = split
    return obj


def write_jsonl(path: Path, conversations: list[dict]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in conversations), encoding="utf-8")
    return path


def test_same_file_twice_is_unchanged_and_keeps_rows(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [conversation(i, "test") for i in range(5)])
    first = run("import_dataset", "jsonl", str(path))
    rows = list(Sample.objects.order_by("pk").values_list("pk", "key", "reference"))
    second = run("import_dataset", "jsonl", str(path))
    assert second == {**first, "unchanged": True}
    assert list(Sample.objects.order_by("pk").values_list("pk", "key", "reference")) == rows
    assert first == {
        "dataset": "chat", "split": "test", "conversations": 5, "samples": 10, "skipped_lines": 0, "merged_lines": 0,
    }


def test_changed_file_updates_in_place_and_keeps_generic_responses(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [conversation(i, "train") for i in range(4)])
    run("import_dataset", "jsonl", str(path))
    kept = Sample.objects.get(key="chat/train/c0/1")
    kept.generic_response = "R_G written by the augmentation job"
    kept.save()
    # c1's first reply changes, c3 is gone, c4 is new.
    changed = [conversation(0, "train"), conversation(1, "train", reply="Great!"), conversation(2, "train"),
               conversation(4, "train")]
    report = run("import_dataset", "jsonl", str(write_jsonl(path, changed)))
    assert "unchanged" not in report and report["conversations"] == 4 and report["samples"] == 8
    same = Sample.objects.get(key="chat/train/c0/1")
    assert (same.pk, same.generic_response) == (kept.pk, "R_G written by the augmentation job")
    assert Sample.objects.get(key="chat/train/c1/1").reference == "Great!"
    assert set(Conversation.objects.values_list("source_id", flat=True)) == {"c0", "c1", "c2", "c4"}
    assert Sample.objects.count() == 8


def test_limit_imports_a_prefix_and_never_deletes(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [conversation(i, "valid") for i in range(6)])
    assert run("import_dataset", "jsonl", str(path), "--limit", "2")["conversations"] == 2
    assert list(Conversation.objects.order_by("source_id").values_list("source_id", flat=True)) == ["c0", "c1"]
    assert run("import_dataset", "jsonl", str(path))["conversations"] == 6
    assert run("import_dataset", "jsonl", str(path), "--limit", "3")["conversations"] == 3
    assert Conversation.objects.count() == 6  # a limited import adds or updates, it does not prune


def test_split_option_and_seeded_split(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [conversation(i) for i in range(20)])
    report = run("import_dataset", "jsonl", str(path), "--name", "seeded")
    assert report["split"] == "train,valid"
    valid = set(Conversation.objects.filter(dataset__name="seeded", split="valid").values_list("source_id", flat=True))
    assert len(valid) == 2  # 10% of 20 conversations
    dataset_import(kind="jsonl", path=path, name="seeded-again")
    again = Conversation.objects.filter(dataset__name="seeded-again", split="valid").values_list("source_id", flat=True)
    assert set(again) == valid

    forced = run("import_dataset", "jsonl", str(path), "--name", "forced", "--split", "test")
    assert forced["split"] == "test"
    assert set(Sample.objects.filter(dataset__name="forced").values_list("split", flat=True)) == {"test"}


def test_bad_options_are_clear_errors(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [conversation(0, "test")])
    run("import_dataset", "jsonl", str(path), "--name", "taken")
    ed = tmp_path / "test.csv"
    ed.write_text(ED_HEADER + ED_ROWS, encoding="utf-8")
    with pytest.raises(CommandError, match="'taken' already holds Canonical JSONL data"):
        run("import_dataset", "ed", str(ed), "--name", "taken")
    with pytest.raises(CommandError, match="must be 1-100 letters"):
        run("import_dataset", "ed", str(ed), "--name", "no spaces")
    with pytest.raises(CommandError, match="no such file"):
        run("import_dataset", "ed", str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        run("import_dataset", "ed", str(ed), "--limit", "0")
    assert Dataset.objects.count() == 1 and Conversation.objects.count() == 1


def test_fetch_without_network_fails_clearly_and_leaves_no_file(tmp_path):
    dest = tmp_path / "ed"
    with pytest.raises(CommandError) as error:
        # Port 9 (discard) on localhost: nothing listens, the connection is refused at once.
        call_command("fetch_dataset", "ed", "--dest", str(dest), "--base-url", "http://127.0.0.1:9/", "--timeout", "3")
    message = str(error.value)
    assert "Cannot download http://127.0.0.1:9/empatheticdialogues.tar.gz" in message
    assert "no network access" in message
    assert list(dest.iterdir()) == []


@pytest.fixture
def release_server(tmp_path):
    """A local HTTP server holding an ED-style release tarball (hand-made CSVs)."""
    root = tmp_path / "mirror"
    root.mkdir()
    with tarfile.open(root / "empatheticdialogues.tar.gz", "w:gz") as tar:
        for split in ("train", "valid", "test"):
            data = (ED_HEADER + ED_ROWS).replace("hit:", f"{split}-hit:").encode()
            info = tarfile.TarInfo(f"empatheticdialogues/{split}.csv")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_fetch_from_a_mirror_then_import(tmp_path, release_server):
    dest = tmp_path / "data" / "ed"
    report = run("fetch_dataset", "ed", "--dest", str(dest), "--base-url", release_server)
    assert report["files"] == ["test.csv", "train.csv", "valid.csv"]
    assert report["next"][0] == f"python manage.py import_dataset ed {dest}/train.csv"
    imported = run("import_dataset", "ed", str(dest / "valid.csv"))
    assert (imported["split"], imported["conversations"], imported["samples"]) == ("valid", 2, 3)

    with pytest.raises(CommandError, match="HTTP 404"):
        call_command("fetch_dataset", "pfg", "--dest", str(tmp_path / "pfg"), "--base-url", release_server)


def test_admin_lists_and_searches_imported_rows_read_only(admin_client):
    path = Path(__file__).resolve().parents[2] / "data" / "demo" / "demo.jsonl"
    run("import_dataset", "jsonl", str(path), "--name", "demo")
    page = admin_client.get("/admin/modeling/dataset/")
    assert page.status_code == 200 and b"demo" in page.content
    found = admin_client.get("/admin/modeling/sample/", {"q": "Saturday market"})
    assert found.status_code == 200 and b"demo/train/demo-001/1" in found.content
    sample = Sample.objects.get(key="demo/train/demo-001/1")
    detail = admin_client.get(f"/admin/modeling/sample/{sample.pk}/change/")
    assert detail.status_code == 200 and b"Saturday market" in detail.content
    # Read-only: posting a change does not alter the row; there is no add page.
    admin_client.post(f"/admin/modeling/sample/{sample.pk}/change/", {"reference": "edited"})
    sample.refresh_from_db()
    assert sample.reference.startswith("Welcome! Come by the Saturday market")
    assert admin_client.get("/admin/modeling/sample/add/").status_code == 403
    for model in ("conversation", "system", "response", "metricresult"):
        assert admin_client.get(f"/admin/modeling/{model}/").status_code == 200
