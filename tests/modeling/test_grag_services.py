"""Training and generation through the database: services, management commands, a real worker."""
import json
from io import StringIO

import pytest
import torch
from django.core.management import CommandError, call_command

from modeling.grag_services import system_create, system_generate, train_system
from modeling.models import Conversation, Dataset, Response, Sample, System
from tests.conftest import wait_for

DIALOGUES = [
    ("I love running. I have a dog named Max.", [("user", "Hi! How are you today?"), ("agent", "Great, I just got back from a run."),
     ("user", "Nice, do you run often?"), ("agent", "Every morning with my dog Max!")], ["I am doing well, thanks.", "Yes, I run regularly."]),
    ("I am vegan. I love garlic.", [("user", "What do you like to cook?"), ("agent", "Vegan pasta with lots of garlic."),
     ("user", "Sounds tasty. Any tips?"), ("agent", "Roast the garlic first, it gets sweet.")], ["I like to cook many things.", "Cook it slowly."]),
]


@pytest.fixture(autouse=True)
def artifacts(settings, tmp_path, monkeypatch):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    monkeypatch.setenv("ARTIFACTS_DIR", str(tmp_path / "artifacts"))  # for a worker process started by the test
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_dataset(*, with_generic: bool = True) -> Dataset:
    dataset = Dataset.objects.create(name="tiny", kind=Dataset.Kind.JSONL)
    for split in ("train", "valid", "test"):
        for n, (persona, turns, generics) in enumerate(DIALOGUES):
            conv = Conversation.objects.create(dataset=dataset, split=split, source_id=str(n), agent_persona=persona,
                                               turns=[{"role": r, "text": t} for r, t in turns])
            for k, turn_index in enumerate(i for i, (r, _) in enumerate(turns) if r == "agent"):
                Sample.objects.create(
                    dataset=dataset, conversation=conv, split=split, turn_index=turn_index,
                    key=f"tiny/{split}/{n}/{turn_index}", agent_persona=persona,
                    history=[{"role": r, "text": t} for r, t in turns[:turn_index]], reference=turns[turn_index][1],
                    generic_response=generics[k] if with_generic else "",
                )
    return dataset


TINY = {"epochs": 1, "batch_size": 2, "checkpoint_every": 0, "max_new_tokens": 6, "generation_batch_size": 3}


@pytest.mark.django_db
def test_train_then_generate_stores_responses_with_the_nll_for_bpc_and_reruns_resume():
    dataset = make_dataset()
    system = system_create(name="tiny-postgrag", dataset=dataset, method="postgrag", backbone="tiny:llama", config=TINY)
    result = train_system(system=system)
    system.refresh_from_db()
    assert system.status == System.Status.TRAINED and result["samples"] == 4 and result["valid_samples"] == 4
    assert result["steps"] == 2 and system.config["training"]["best_valid_l_p"] > 0

    progress = []
    report = system_generate(system=system, split="test", limit=3, progress=lambda d, t: progress.append((d, t)))
    degenerate = report.pop("degenerate")
    assert report == {"system": "tiny-postgrag", "split": "test", "created": 3, "existing": 0, "responses": 3}
    assert progress[-1] == (3, 3)
    rows = list(Response.objects.filter(system=system).select_related("sample"))
    assert len(rows) == 3
    # Degenerate-output flags in each response's meta, counted in the job summary. An untrained
    # tiny model never says end-of-sequence within 6 tokens: every response hit the limit.
    assert degenerate["checked"] == 3 and degenerate["hit_max_new_tokens"] == 3
    assert degenerate["flagged"] == sum(bool(r.meta["degenerate"]["flags"]) for r in rows) == 3
    for r in rows:
        assert r.meta["degenerate"]["hit_limit"] is True
        assert r.meta["ref_chars"] == len(r.sample.reference)
        assert r.meta["nll_nats"] > 0 and r.meta["bpc"] == pytest.approx(r.meta["nll_nats"] / 0.693147 / r.meta["ref_chars"], rel=1e-4)
    system.refresh_from_db()
    assert system.status == System.Status.GENERATED and system.generation["decoding"] == "greedy"

    again = system_generate(system=system, split="test")  # only the missing sample is generated
    assert again["created"] == 1 and again["existing"] == 3 and Response.objects.filter(system=system).count() == 4
    rerun = train_system(system=system)  # finished run: resumes at its end, trains nothing more
    assert rerun["resumed"] is True and rerun["steps"] == 2


@pytest.mark.django_db
def test_commands_print_one_json_line_and_fail_clearly_on_bad_input():
    make_dataset(with_generic=False)
    out = StringIO()
    call_command("train", "--dataset", "tiny", "--method", "presft_hist", "--backbone", "tiny:bart", "--epochs", "1",
                 "--batch-size", "4", "--set", "checkpoint_every=0", "--set", "max_new_tokens=4", stdout=out)
    trained = json.loads(out.getvalue().strip())
    assert trained["system"] == "tiny-presft_hist" and trained["steps"] == 1
    out = StringIO()
    call_command("generate", "--system", "tiny-presft_hist", "--split", "valid", "--decoding", "beam", stdout=out)
    assert json.loads(out.getvalue().strip())["created"] == 4
    assert Response.objects.filter(system__name="tiny-presft_hist", meta__decoding="beam").count() == 4

    with pytest.raises(CommandError, match=r"4 of 4 samples of tiny/train have no generic response R_G .*augmentation"):
        call_command("train", "--dataset", "tiny", "--method", "postgrag", "--backbone", "tiny:bart")
    with pytest.raises(CommandError, match="No dataset named 'nope'"):
        call_command("train", "--dataset", "nope", "--method", "postgrag")
    with pytest.raises(CommandError, match="'facebook/bart-missing' is not on this machine"):
        call_command("train", "--dataset", "tiny", "--method", "presft_hist", "--backbone", "facebook/bart-missing", "--system", "x")
    with pytest.raises(CommandError, match="No system named 'ghost'"):
        call_command("generate", "--system", "ghost")


@pytest.mark.slow
def test_worker_trains_and_generates_from_jobs(celery_worker_process):
    from worker.models import Job
    from worker.services import job_launch

    make_dataset()
    params = {"dataset": "tiny", "method": "pregrag", "backbone": "tiny:llama", "system_name": "tiny-pregrag",
              "epochs": 1, "batch_size": 2, "lr": 1e-3, "alpha": 0.5, "beta": 0.01, "split": "train",
              "config": {"checkpoint_every": 0, "max_new_tokens": 4}}
    job = job_launch(kind=Job.Kind.TRAIN, task="worker.train", params=params)
    done = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=["succeeded", "failed"]).first(), timeout=300)
    assert done.status == "succeeded", done.error + done.traceback
    assert done.result["system"] == "tiny-pregrag" and done.result["steps"] == 2
    assert done.progress_done == done.progress_total == 2
    gen = job_launch(kind=Job.Kind.GENERATE, task="worker.generate", params={"system": "tiny-pregrag", "split": "test", "limit": 2})
    done = wait_for(lambda: Job.objects.filter(pk=gen.pk, status__in=["succeeded", "failed"]).first(), timeout=300)
    assert done.status == "succeeded", done.error + done.traceback
    assert Response.objects.filter(system__name="tiny-pregrag").count() == 2
    assert done.result["degenerate"]["checked"] == 2 and "degenerate outputs: " in done.log_tail
