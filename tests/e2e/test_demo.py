"""`python manage.py demo --no-serve`: the whole pipeline on CPU with the offline SmolLM2 model."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.core.management import call_command

from annotation.models import Rating, Study
from common.threads import shared_cpu_default
from tests.conftest import ROOT, wait_for
from worker.models import Job


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_demo_runs_the_whole_pipeline_and_summarises_what_it_produced():
    out = StringIO()
    call_command("demo", "--no-serve", "--train-limit", "4", "--eval-limit", "2", "--max-steps", "1",
                 stdout=out, stderr=StringIO())
    summary = json.loads(out.getvalue().strip().splitlines()[-1])

    assert summary["samples"] > 0 and summary["generic_responses"] > 0
    assert summary["systems"] == ["demo-postgrag", "demo-presft_hist"]
    assert summary["responses"] == {"demo-postgrag": 2, "demo-presft_hist": 2}
    for name in summary["systems"]:
        assert {"char_f1", "rouge1", "rouge2", "rougeL", "bleu", "bpc", "bert_f1"} <= set(summary["metrics"][name])
    study = Study.objects.get(slug=summary["study"]["slug"])
    assert summary["study"]["items"] == study.items.count() == 2
    assert set(study.annotators.values_list("username", flat=True)) == {"annotator1", "annotator2", "annotator3"}
    # The judge scored the four questions for both items in both orders; SmolLM2 gives the option
    # letters too little probability, so its verdicts abstain and the run is marked unreliable.
    run = study.judge_runs.get()
    assert run.verdicts.count() == 16
    assert summary["judge_ratings"] == Rating.objects.filter(item__study=study, rater_kind="llm").count()
    assert summary["judge_ratings"] + len(set(run.verdicts.filter(abstained=True).values_list("item", "question"))) == 8
    assert summary["judge_runs"][run.name]["verdict"] == "unreliable"
    assert summary["judge_runs"][run.name]["checks"]["option_mass"]["level"] == "unreliable"
    pipeline = Job.objects.get(pk=summary["pipeline_job"])
    assert pipeline.status == Job.Status.SUCCEEDED
    assert set(pipeline.children.values_list("status", flat=True)) == {Job.Status.SUCCEEDED}
    assert pipeline.progress_done == pipeline.children.count()
    assert set(summary["logins"]) == {"admin", "annotator1", "annotator2", "annotator3"}


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


@pytest.mark.slow
@pytest.mark.parametrize("sig,times", [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 2)],
                         ids=["SIGTERM", "SIGINT", "SIGTERM-twice"])
def test_stopping_the_demo_stops_the_worker_and_server_it_started(tmp_path, sig, times):
    """`make demo` stopped with SIGTERM or Ctrl-C leaves nothing running and frees its port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "grag_site.settings.local",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
           "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
           "CELERY_RESULT_BACKEND": f"db+sqlite:///{tmp_path / 'results.sqlite3'}",
           "ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    env.pop("LLM_CPU_THREADS", None)  # the demo's own default applies
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    log = open(tmp_path / "demo.log", "w+")
    demo = subprocess.Popen([sys.executable, "manage.py", "demo", "--port", str(port), "--no-judge"], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: "GRAG demo running" in (tmp_path / "demo.log").read_text(), timeout=120)
        children = _children(demo.pid)
        assert len(children) == 2  # the Celery worker and the web server
        assert wait_for(lambda: _port_open(port), timeout=60)
        # The worker runs torch on the demo's thread count, so a shared CPU does not slow it ten-fold.
        worker = next(p for p in children if b"celery" in open(f"/proc/{p}/cmdline", "rb").read())
        environ = dict(kv.split(b"=", 1) for kv in open(f"/proc/{worker}/environ", "rb").read().split(b"\0") if b"=" in kv)
        assert environ[b"LLM_CPU_THREADS"] == str(shared_cpu_default()).encode()
        assert f"torch threads: {shared_cpu_default()}" in (tmp_path / "demo.log").read_text()
        demo.send_signal(sig)
        if times == 2:  # `make demo` killed as a process group: make passes a second SIGTERM on
            time.sleep(1.0)
            demo.send_signal(sig)
        demo.wait(timeout=60)
        assert not [pid for pid in children if _alive(pid)], (tmp_path / "demo.log").read_text()
        assert not _port_open(port)
    finally:
        if demo.poll() is None:
            demo.kill()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
