"""The degenerate corpus through every stage in one test (issue 16): import, study, annotate page,
judge (real SmolLM2, 2 items), metrics and report.

The corpus (``tests/fixtures/degenerate``): empty, whitespace-only, punctuation-only, a repetition
loop, a reply cut mid-sentence, one unbroken 2,000-character word, non-Latin script and NFD
Unicode. What this test asserts is what every stage guarantees for such text: it is accepted,
kept byte for byte, shown, judged, scored and reported without an error, and the study check
lists what is degenerate. The metric values right for these texts (ROUGE of identical
non-Latin texts, NFC = NFD) and the judge's abstentions on them are asserted by the metrics
and judge tests of those branches; see the notes marked "metrics:" and "judge:" below.
"""
import json
import math
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotation import services
from annotation.giveaways import text_degenerate
from annotation.models import Assignment, Item, Rating
from judge.models import JudgeVerdict
from judge.services import judge_run_create, judge_run_execute
from modeling.importers.service import dataset_import
from modeling.metric_services import metrics_compute
from modeling.models import MetricResult, Response, Sample, System
from tests.fixtures.degenerate import CORPUS, FLAGGED, ORDINARY

QUESTIONS = ("q1", "q2", "q3", "q4")
# Conversation ids sort in this order, and so do the study's items (by sample key): the judge
# (first two items) sees the two hardest kinds for it, an empty reply and a 2,000-character word.
ORDER = ["empty", "unbroken_word"] + [k for k in CORPUS if k not in ("empty", "unbroken_word")]


def kind_of(source_id: str) -> str:
    return source_id.split("-", 1)[1]


def _dataset_file(path) -> str:
    """One conversation per kind; the reference is the corpus text where a dataset may hold it
    (a dataset turn must have text, so empty and whitespace-only references are ordinary)."""
    lines = []
    for position, kind in enumerate(ORDER):
        text = CORPUS[kind]
        reference = text if text.strip() else ORDINARY
        lines.append(json.dumps({
            "id": f"{position:02d}-{kind}", "split": "test", "agent_persona": ["I love hiking.", "I drink café crème."],
            "turns": [{"role": "user", "text": f"Tell me something ({kind})."}, {"role": "agent", "text": reference}],
        }, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.slow
@pytest.mark.django_db
def test_the_degenerate_corpus_goes_through_every_stage(tmp_path, client):
    # --- import: the dataset keeps every reference exactly (NFD stays NFD, the long word whole).
    report = dataset_import(kind="jsonl", path=_dataset_file(tmp_path / "degenerate.jsonl"), name="degenerate")
    assert (report.conversations, report.samples) == (len(CORPUS), len(CORPUS))
    samples = {kind_of(s.conversation.source_id): s for s in Sample.objects.select_related("conversation")}
    for kind, text in CORPUS.items():
        assert samples[kind].reference == (text.strip() if text.strip() else ORDINARY)

    # Two systems: an ordinary baseline, a challenger that produced each degenerate kind.
    base = System.objects.create(name="deg-base", method="presft_hist")
    chal = System.objects.create(name="deg-chal", method="postgrag")
    for kind in ORDER:
        Response.objects.create(system=base, sample=samples[kind], text=ORDINARY)
        Response.objects.create(system=chal, sample=samples[kind], text=CORPUS[kind])

    # --- study: made from the systems, neutral, and closed because its check flags responses.
    study = services.study_create_from_systems(baseline=base, challenger=chal, split="test")
    assert study.slug.startswith("study-") and not study.is_open
    degenerate_kinds = [kind for kinds in FLAGGED.values() for kind in kinds]
    assert study.meta["check"] == {"giveaways": 0, "degenerate": len(degenerate_kinds)}
    out = StringIO()
    call_command("check_study", study.slug, stdout=out)
    by_system = json.loads(out.getvalue())["degenerate"]["by_system"]
    assert by_system == {"deg-base": {}, "deg-chal": {kind: 1 for kind in degenerate_kinds}}
    items = {kind_of(i.sample.conversation.source_id): i for i in study.items.select_related("sample__conversation")}
    for kind, text in CORPUS.items():
        assert items[kind].challenger_response == text  # byte for byte: no stripping, no NFC
        assert text_degenerate(text) == FLAGGED[kind]

    # The same pairs as a study file: import_study accepts every kind, the empty ones included.
    rows = [{"key": kind, "persona": "I love hiking.", "history": [{"role": "user", "text": "Tell me something."}],
             "responses": {"deg-base": ORDINARY, "deg-chal": text}} for kind, text in CORPUS.items()]
    study_file = tmp_path / "study.jsonl"
    study_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    imported, n = services.study_import_jsonl(path=str(study_file), slug="imported-corpus", baseline="deg-base",
                                              challenger="deg-chal")
    assert n == len(CORPUS)
    assert {i.key: i.challenger_response for i in imported.items.all()} == CORPUS

    # --- annotate page: staff open the study after review; an annotator rates every item.
    services.study_update(study=study, is_open=True)
    annotator = services.annotator_add(username="ann", password="pw-ann-123", study=study)
    client.force_login(annotator)
    services.instructions_confirm(study=study, annotator=annotator)  # read once per version (issue 21)
    shown = {}
    for _ in CORPUS:
        page = client.get(reverse("annotation:annotate", args=[study.slug]))
        assert page.status_code == 200
        html = page.content.decode()
        assignment = Assignment.objects.get(annotator=annotator, status=Assignment.Status.RESERVED)
        kind = kind_of(assignment.item.sample.conversation.source_id)
        shown[kind] = html
        answers = {f"{q}-choice": "S" for q in QUESTIONS} | {f"{q}-confidence": "3" for q in QUESTIONS}
        done = client.post(reverse("annotation:item_rate", args=[study.slug, assignment.item.public_id]), answers)
        assert done.status_code in (200, 302), done.content[:500]
    assert set(shown) == set(CORPUS)
    assert '<p class="text empty-response">(empty response)</p>' in shown["empty"]
    assert '<p class="text empty-response">(empty response)</p>' in shown["whitespace_only"]
    assert CORPUS["unbroken_word"] in shown["unbroken_word"]  # whole, not cut
    assert CORPUS["nfd"] in shown["nfd"] and CORPUS["non_latin"] in shown["non_latin"]
    assert Rating.objects.filter(item__study=study, rater_kind="human").count() == len(CORPUS) * len(QUESTIONS)

    # --- judge: the real SmolLM2 on the first two items (empty, 2,000-character word), both orders.
    run = judge_run_create(study=study, model_id="smollm2", name="LLM-degenerate", limit=2)
    summary = judge_run_execute(run=run, limit=2)
    assert summary["items"] == 2
    verdicts = JudgeVerdict.objects.filter(run=run)
    assert verdicts.count() == 2 * len(QUESTIONS) * 2 and not verdicts.filter(failed=True).exists()
    judged = {kind_of(source_id) for source_id in verdicts.values_list("item__sample__conversation__source_id", flat=True)}
    assert judged == {"empty", "unbroken_word"}
    # judge: whether SmolLM2's verdicts on these are abstentions (option mass below the run's
    # minimum) is asserted by the judge branch's tests, not here.

    # --- metrics: every stored value is a finite number, for every sample.
    metrics_compute(system=chal, split="test", bert=False)
    per_sample = MetricResult.objects.filter(system=chal, sample__isnull=False)
    assert set(per_sample.values_list("sample_id", flat=True)) == {s.pk for s in samples.values()}
    for name, value in per_sample.values_list("name", "value"):
        assert math.isfinite(value), name
        # (sacrebleu's sentence BLEU of identical texts is 100.00000000000004: float rounding)
        assert 0 <= value <= (100 if name == "bleu" else 1) + 1e-9, (name, value)
    # metrics: the right values (ROUGE 1 for identical non-Latin texts, NFD = NFC, empty vs empty
    # defined once) are asserted by the metrics branch's tests.

    # --- report: the agreement report of the study, with the human and the LLM rater, in every text format.
    for fmt in ("json", "csv", "html"):
        out = StringIO()
        call_command("agreement_report", study.slug, "--format", fmt, stdout=out)
        assert out.getvalue().strip()
    report = json.loads(_report_json(study.slug))
    assert report["study"] == study.slug
    assert "LLM-degenerate" in json.dumps(report)
    assert Item.objects.filter(study=study).count() == len(CORPUS)


def _report_json(slug: str) -> str:
    out = StringIO()
    call_command("agreement_report", slug, "--format", "json", stdout=out)
    return out.getvalue()
