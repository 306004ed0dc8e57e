"""Study data (issue 16): one key rule, empty and degenerate responses, neutral and closed generated studies.

- Keys: ``annotation.keys.key_normalise`` (NFC, whitespace runs as one space, outer whitespace
  dropped, case kept) is used by every reader and writer, so ``export_votes`` output imports again
  even after an editor re-saved it with NFD accents and padded cells.
- Empty and whitespace-only responses are imported; annotators see "(empty response)" with the
  same markup on side A and side B; the study check lists degenerate responses per system.
- A study made from systems gets a neutral slug and title and stays closed while its checks flag
  anything; its annotators see that it is being prepared.
"""
import csv
import io
import json
import re
import unicodedata

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

from annotation import services
from annotation.keys import key_normalise
from annotation.models import Assignment, Item, Rating, Study
from annotation.services import StudyFileError
from tests.factories import BASELINE, CHALLENGER, jsonl_write, samples_create, study_line, systems_with_responses
from tests.fixtures.degenerate import CORPUS, FLAGGED, ORDINARY

pytestmark = pytest.mark.django_db

NFC_KEY = "spc/test/Café crème/1"
MESSY_KEYS = {
    # as written in the study file -> as stored
    "  spc/test/c1/1 \t": "spc/test/c1/1",
    unicodedata.normalize("NFD", NFC_KEY): NFC_KEY,
    "spc/test/two\u00a0 spaces/3": "spc/test/two spaces/3",
    "spc/test/Conv-1/4": "spc/test/Conv-1/4",  # case is kept: this and the next are two items
    "spc/test/conv-1/4": "spc/test/conv-1/4",
}


def item_line(key: str, baseline: str = "I like parks.", challenger: str = "I hike with my cats.") -> dict:
    return study_line(key=key, generic_response="I went out.", responses={BASELINE: baseline, CHALLENGER: challenger})


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --------------------------------------------------------------------------- keys


def test_key_normalise_is_nfc_single_spaced_stripped_and_keeps_case():
    assert key_normalise(" a \t b\n") == "a b"
    assert key_normalise(unicodedata.normalize("NFD", "café")) == "café" == unicodedata.normalize("NFC", "café")
    assert key_normalise("Conv-1") == "Conv-1" != key_normalise("conv-1")
    with pytest.raises(TypeError):
        key_normalise(3)


def test_messy_keys_are_stored_normalised_and_an_export_always_imports_again(tmp_path):
    path = jsonl_write(tmp_path / "s.jsonl", [item_line(k) for k in MESSY_KEYS])
    study, n = services.study_import_jsonl(path=path, slug="keys", baseline=BASELINE, challenger=CHALLENGER)
    assert n == len(MESSY_KEYS)
    assert sorted(study.items.values_list("key", flat=True)) == sorted(MESSY_KEYS.values())
    # Importing the same file again finds every item (nothing new, nothing refused).
    assert services.study_import_jsonl(path=path, slug="keys", baseline=BASELINE, challenger=CHALLENGER)[1] == n

    # Votes on every item, written with the file's messy spellings of the keys.
    votes = tmp_path / "votes.csv"
    with votes.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(services.VOTE_COLUMNS)
        for raw in MESSY_KEYS:
            for q in ("q1", "q2", "q3", "q4"):
                writer.writerow([raw, "alice", "human", f" {q} ", "challenger", 4])
    assert json.loads(run("import_votes", "keys", str(votes))) == {"study": "keys", "added": 20, "changed": 0, "unchanged": 0}

    # export_votes writes the normal form; an editor then re-saves it in NFD with padded cells:
    # it still imports onto the same ratings, changing nothing.
    exported = tmp_path / "export.csv"
    run("export_votes", "keys", "--output", str(exported))
    rows = list(csv.DictReader(exported.open(encoding="utf-8")))
    assert sorted({r["item_key"] for r in rows}) == sorted(MESSY_KEYS.values())
    resaved = tmp_path / "resaved.csv"
    text = unicodedata.normalize("NFD", exported.read_text(encoding="utf-8"))
    resaved.write_text(re.sub(r"^([^,\n]+),", r"  \1\t,", text, flags=re.MULTILINE).replace("  item_key\t", "item_key", 1),
                       encoding="utf-8")
    assert json.loads(run("import_votes", "keys", str(resaved))) == {"study": "keys", "added": 0, "changed": 0, "unchanged": 20}
    assert json.loads(run("import_votes", "keys", str(exported))) == {"study": "keys", "added": 0, "changed": 0, "unchanged": 20}

    # A new study made from the same file takes the exported votes as they are.
    services.study_import_jsonl(path=path, slug="keys-2", baseline=BASELINE, challenger=CHALLENGER)
    assert json.loads(run("import_votes", "keys-2", str(resaved)))["added"] == 20


def test_two_spellings_of_one_key_in_a_study_file_are_one_key(tmp_path):
    path = jsonl_write(tmp_path / "dup.jsonl", [item_line(NFC_KEY), item_line(unicodedata.normalize("NFD", NFC_KEY) + " ")])
    with pytest.raises(StudyFileError, match=r"dup\.jsonl:2: key 'spc/test/Café crème/1' already used on line 1"):
        services.study_import_jsonl(path=path, slug="dup", baseline=BASELINE, challenger=CHALLENGER)
    assert not Study.objects.exists()


def test_the_staff_api_creates_items_with_the_same_key_rule(client):

    staff = User.objects.create_user("staff", password="pw-staff-1", is_staff=True)
    client.force_login(staff)
    response = client.post(
        "/api/staff/studies/", {"slug": "api-keys", "baseline_name": BASELINE, "challenger_name": CHALLENGER,
                          "items": [item_line(unicodedata.normalize("NFD", NFC_KEY) + "  ", baseline="")]},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    item = Item.objects.get(study__slug="api-keys")
    assert item.key == NFC_KEY and item.baseline_response == ""
    study = Study.objects.get(slug="api-keys")
    Rating.objects.create(item=item, question="q1", rater="judge", rater_kind="llm", choice="similar", confidence=3)
    exported = client.get("/api/staff/studies/api-keys/ratings/").json()
    assert [row["item_key"] for row in exported] == [NFC_KEY] and study.items.count() == 1


# --------------------------------------------------------------------------- empty and degenerate responses


def test_empty_and_whitespace_only_responses_are_imported(tmp_path):
    rows = [item_line("k/empty", baseline=""), item_line("k/blank", challenger="  \n ")]
    study, n = services.study_import_jsonl(path=jsonl_write(tmp_path / "e.jsonl", rows), slug="empty",
                                           baseline=BASELINE, challenger=CHALLENGER)
    assert n == 2
    assert study.items.get(key="k/empty").baseline_response == ""
    assert study.items.get(key="k/blank").challenger_response == "  \n "


def _response_sections(html: str) -> dict[str, str]:
    """The inner HTML of the Response A and Response B cards, heading left out."""
    out = {}
    for side in "ab":
        m = re.search(rf'<h2 id="response-{side}-h">Response {side.upper()}</h2>(.*?)</section>', html, re.DOTALL)
        assert m, html
        out[side.upper()] = m.group(1).strip()
    return out


def test_annotators_see_empty_response_the_same_way_on_either_side(tmp_path, client):
    rows = [item_line("k/empty", baseline="", challenger="I hike with my cats.")]
    study, _ = services.study_import_jsonl(path=jsonl_write(tmp_path / "e.jsonl", rows), slug="empty-page",
                                           baseline=BASELINE, challenger=CHALLENGER, overlap=1)
    user = services.annotator_add(username="ann", password="pw-ann-123", study=study)
    client.force_login(user)
    services.instructions_confirm(study=study, annotator=user)  # read once per version (issue 21)
    url = reverse("annotation:annotate", args=[study.slug])
    seen = {}
    for side in ("A", "B"):
        client.get(url)
        Assignment.objects.filter(annotator=user).update(baseline_side=side)  # where the empty baseline is shown
        html = client.get(url).content.decode()
        seen[side] = _response_sections(html)
    empty = '<p class="text empty-response">(empty response)</p>'
    assert seen["A"]["A"] == empty and seen["B"]["B"] == empty
    assert seen["A"]["B"] == seen["B"]["A"] == '<p class="text">I hike with my cats.</p>'
    # Whitespace-only is shown the same way as empty.
    Item.objects.filter(study=study).update(baseline_response=" \n\t")
    assert _response_sections(client.get(url).content.decode())["B"] == empty


def test_check_study_lists_degenerate_responses_per_system(tmp_path):
    rows = [item_line(f"k/{kind}", baseline=ORDINARY, challenger=text) for kind, text in CORPUS.items()]
    rows.append(item_line("k/base-loop", baseline=CORPUS["repetition_loop"], challenger=ORDINARY))
    services.study_import_jsonl(path=jsonl_write(tmp_path / "d.jsonl", rows), slug="degen", baseline=BASELINE,
                                challenger=CHALLENGER)
    report = json.loads(run("check_study", "degen"))["degenerate"]
    expected = {kind: 1 for kinds in FLAGGED.values() for kind in kinds}
    assert report["by_system"] == {BASELINE: {"repetition_loop": 1}, CHALLENGER: expected}
    flagged = {(r["item"], r["system"], r["kind"]) for r in report["flags"]}
    assert flagged == {(f"k/{k}", CHALLENGER, kind) for k, kinds in FLAGGED.items() for kind in kinds} | {
        ("k/base-loop", BASELINE, "repetition_loop")
    }
    with pytest.raises(Exception, match="7 degenerate response"):
        run("check_study", "degen", "--fail-on-flags")


def test_the_study_check_does_not_flag_ordinary_replies():
    from annotation.giveaways import text_degenerate

    for text in (ORDINARY, "lol ok", "no no no", "What are you afraid of?", "I love her", CORPUS["non_latin"],
                 CORPUS["nfd"], "Я тоже люблю чай", "See https://example.org/a/b?c=d for the recipe."):
        assert text_degenerate(text) == [], text


# --------------------------------------------------------------------------- studies made from systems


def _two_systems(texts: list[tuple[str, str]]):
    samples = samples_create([dict(key=unicodedata.normalize("NFD", f"spc/test/Café {i}/1"), reference="r",
                                   history=[{"role": "user", "text": "hi"}], agent_persona="I like tea.")
                              for i in range(len(texts))])
    return systems_with_responses(
        samples, texts,
        baseline=dict(name="spc-presft_hist", method="presft_hist", backbone="HuggingFaceTB/SmolLM2-135M-Instruct"),
        challenger=dict(name="spc-postgrag", method="postgrag", backbone="facebook/bart-base"))


def test_a_study_from_clean_systems_is_neutral_and_open():
    base, chal = _two_systems([("I like tea.", "I like green tea.")] * 3)
    study = services.study_create_from_systems(baseline=base, challenger=chal)
    assert re.fullmatch(r"study-[0-9a-f]{8}", study.slug) and study.title == study.slug
    assert study.is_open and study.meta["check"] == {"giveaways": 0, "degenerate": 0}
    assert set(study.items.values_list("key", flat=True)) == {f"spc/test/Café {i}/1" for i in range(3)}


def test_a_study_from_systems_stays_closed_while_its_check_flags_anything():
    base, chal = _two_systems([("I like tea.", ""), ("I like tea.", "As an AI language model, I like tea."),
                               ("I like tea.", "I like green tea.")])
    study = services.study_create_from_systems(baseline=base, challenger=chal)
    from annotation.giveaways import study_giveaways

    assert not study.is_open and study.meta["check"] == {"giveaways": len(study_giveaways(study=study)), "degenerate": 1}
    assert study.meta["check"]["giveaways"] > 0
    # Staff open it after review.
    services.study_update(study=study, is_open=True)
    assert Study.objects.get(pk=study.pk).is_open


@pytest.mark.parametrize("slug, title, word", [
    ("spc-presft_hist-vs-spc-postgrag", "", "spc-presft_hist"),
    ("baseline-vs-postgrag", "", "postgrag"),
    ("eval-1", "Does GRAG help?", "GRAG"),
    ("eval-2", "SmolLM2 answers", "SmolLM2"),
    ("presft-hist-eval", "", "presft hist"),
])
def test_a_study_from_systems_refuses_a_slug_or_title_that_names_a_system(slug, title, word):
    base, chal = _two_systems([("I like tea.", "I like green tea.")])
    with pytest.raises(ValueError, match=re.escape(f"names {word!r}")):
        services.study_create_from_systems(slug=slug, title=title, baseline=base, challenger=chal)
    assert not Study.objects.exists()


def test_the_pipeline_and_the_study_job_name_their_study_neutrally(db):
    from worker.forms import StudyForm
    from worker.models import Job
    from worker.pipeline import PipelinePlan
    from worker.tasks.annotation import create_study

    plan = PipelinePlan(dataset="spc")
    assert re.fullmatch(r"study-[0-9a-f]{8}", plan.slug()) and plan.slug() == PipelinePlan(dataset="spc").slug()
    assert dict(plan.stages())["study"]["slug"] == plan.slug()
    base, chal = _two_systems([("I like tea.", "I like green tea.")] * 2)
    job = Job.objects.create(kind=Job.Kind.STUDY, params={"baseline": base.name, "challenger": chal.pk})
    create_study.run(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert re.fullmatch(r"study-[0-9a-f]{8}", job.result["study"]) and job.result["open"] is True
    form = StudyForm(data={"slug": "spc-postgrag-eval", "baseline": base.name, "challenger": chal.name, "split": "test",
                           "overlap": 3, "seed": 0})
    assert not form.is_valid() and "names 'spc-postgrag'" in form.errors["slug"][0]
    from worker.forms import PipelineForm

    pipeline = PipelineForm(data={"dataset": "spc", "methods": ["presft_hist", "postgrag"], "study_slug": "presft-hist-study"})
    assert not pipeline.is_valid() and "names 'presft hist'" in pipeline.errors["study_slug"][0]
    assert "study_slug" not in PipelineForm(data={"dataset": "spc", "study_slug": "spring-eval"}).errors


def test_annotators_of_a_closed_study_see_that_it_is_being_prepared(tmp_path, client):
    study, _ = services.study_import_jsonl(path=jsonl_write(tmp_path / "c.jsonl", [item_line("k/1")]), slug="prep",
                                           baseline=BASELINE, challenger=CHALLENGER)
    services.study_update(study=study, is_open=False)
    user = services.annotator_add(username="ann", password="pw-ann-123", study=study)
    client.force_login(user)
    services.instructions_confirm(study=study, annotator=user)  # read once per version (issue 21)
    page = client.get(reverse("annotation:annotate", args=[study.slug]))
    assert page.status_code == 200
    assert "This study is being prepared" in page.content.decode() and "All done" not in page.content.decode()
    assert "Being prepared" in client.get(reverse("annotation:study_list")).content.decode()
    assert "(being prepared)" in client.get("/").content.decode()
    assert not Assignment.objects.exists()
    services.study_update(study=study, is_open=True)
    assert "Response A" in client.get(reverse("annotation:annotate", args=[study.slug])).content.decode()
