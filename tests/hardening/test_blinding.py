"""Blinding (paper section 5.5, issues 4 and 10): nothing an annotator can fetch tells them which
system wrote which response; the A/B order is balanced and fixed per (annotator, item); item ids
are opaque; responses that give their author away are flagged before a study opens.
"""
from __future__ import annotations

import json
import re
import string
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from annotation import services
from annotation.giveaways import giveaway_checks, study_checks, study_giveaways, text_giveaways
from annotation.models import Assignment, Item, Rating, Study
from modeling.models import System
from tests.factories import jsonl_write

from .conftest import (
    BASELINE,
    BASELINE_BACKBONE,
    CHALLENGER,
    CHALLENGER_BACKBONE,
    QKEYS,
    ids_bump,
    study_lines,
)

FORM_ANSWERS = {**{f"{q}-choice": "A" for q in QKEYS}, **{f"{q}-confidence": "4" for q in QKEYS}}
API_ANSWERS = {"answers": [{"question": q, "choice": "B", "confidence": 3} for q in QKEYS]}


class Fetched:
    """Everything an annotator got back: URLs asked for, statuses, every header, every body."""

    def __init__(self):
        self.records: list[tuple[str, str, str]] = []  # (what, url, text)

    def add(self, what: str, url: str, response) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())
        cookies = "\n".join(f"{k}={m.value}" for k, m in response.cookies.items())
        body = b"".join(response.streaming_content) if response.streaming else response.content
        self.records.append((what, url, f"{response.status_code}\n{headers}\n{cookies}\n{body.decode(errors='replace')}"))

    def find(self, needles: list[str], *, ignore_case: bool = False) -> list[str]:
        hits = []
        for what, url, text in self.records:
            hay = text.lower() if ignore_case else text
            for needle in needles:
                if (needle.lower() if ignore_case else needle) in hay or needle in url:
                    hits.append(f"{needle!r} in {what} {url}")
        return hits


def _get(client, fetched: Fetched, url: str, what: str = "GET", **extra):
    r = client.get(url, **extra)
    fetched.add(what, url, r)
    return r


def _post(client, fetched: Fetched, url: str, what: str = "POST", **kwargs):
    r = client.post(url, **kwargs)
    fetched.add(what, url, r)
    return r


def _order_shown(html: str, item: Item) -> str:
    """Which side the baseline is on in this page: the text that comes first in the DOM is A."""
    a, b = html.find(item.baseline_response), html.find(item.challenger_response)
    assert a >= 0 and b >= 0, "both responses must be on the item page"
    assert html.find("Response A") < html.find("Response B"), "Response A must come before Response B in the DOM"
    return "A" if a < b else "B"


@pytest.fixture
def linked(world):
    """Study X linked to real System rows, so their ids, names and model ids are things to look for."""
    chal = System.objects.get(name=CHALLENGER)
    Study.objects.filter(pk=world.study_x.pk).update(baseline_system=world.system, challenger_system=chal)
    world.study_x.refresh_from_db()
    return world


def test_nothing_an_annotator_fetches_names_a_system_run_model_key_or_id(linked, settings):
    world = linked
    study = world.study_x
    slug = study.slug
    fetched = Fetched()
    web = Client()
    assert web.login(username="ann-x", password="pw-ann-x-123")
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=world.ann_x).key}")

    for url in ("/", "/studies/", f"/studies/{slug}/", "/api/studies/", f"/api/studies/{slug}/"):
        _get(api if url.startswith("/api/") else web, fetched, url)
    r = _post(web, fetched, f"/studies/{slug}/", "POST instructions read")
    assert r.status_code == 302
    shown_sides: dict[str, str] = {}
    web_items = api_items = 0
    for round_no in range(20):
        # The web page, then its htmx fragment, then the item page by its URL.
        r = _get(web, fetched, f"/studies/{slug}/annotate/")
        assert r.status_code == 200
        html = r.content.decode()
        m = re.search(r'action="(/studies/[^"]+/items/([^/"]+)/)"', html)
        if m is None:
            assert "rated every item" in html or "No item is waiting" in html
            break
        action, public_id = m.groups()
        item = Item.objects.get(public_id=public_id)
        side = _order_shown(html, item)
        fr = _get(web, fetched, f"/studies/{slug}/annotate/", "GET htmx", HTTP_HX_REQUEST="true")
        assert _order_shown(fr.content.decode(), item) == side, "a reload must not reshuffle A and B"
        assert _order_shown(_get(web, fetched, action).content.decode(), item) == side
        # The API shows the same reservation in the same order.
        nr = _post(api, fetched, f"/api/studies/{slug}/next/", "POST api next")
        assert nr.json()["item"] == public_id
        assert (nr.json()["response_a"] == item.baseline_response) == (side == "A")
        assert set(nr.json()) == {"item", "persona", "history", "generic_response", "response_a", "response_b",
                                  "questions", "progress"}
        shown_sides[public_id] = side
        bad = _post(web, fetched, action, "POST incomplete (htmx)", data={"q1-choice": "A"}, HTTP_HX_REQUEST="true")
        assert bad.status_code == 422
        if round_no % 2:
            r = _post(web, fetched, action, "POST answers (htmx)", data=FORM_ANSWERS, HTTP_HX_REQUEST="true")
            assert r.status_code == 200
            r = _post(web, fetched, action, "POST answers again (plain form)", data=FORM_ANSWERS)
            assert r.status_code == 302
            web_items += 1
        else:
            r = _post(api, fetched, f"/api/studies/{slug}/items/{public_id}/ratings/", "POST api ratings",
                      data=json.dumps(API_ANSWERS), content_type="application/json")
            assert r.status_code == 201, r.content
            _post(api, fetched, f"/api/studies/{slug}/items/{public_id}/ratings/", "POST api ratings again",
                  data=json.dumps(API_ANSWERS), content_type="application/json")
            _post(api, fetched, f"/api/studies/{slug}/items/{public_id}/ratings/", "POST api bad ratings",
                  data=json.dumps({"answers": [{"question": "q1", "choice": "X"}]}), content_type="application/json")
            api_items += 1
    assert web_items >= 2 and api_items >= 2, "the crawl must cover several items over both the web and the API"
    last = _post(api, fetched, f"/api/studies/{slug}/next/", "POST api next (done)")
    assert last.status_code == 204
    # What an outsider could probe: a made-up item id and another study.
    _get(web, fetched, f"/studies/{slug}/items/{'x' * 16}/")
    _post(api, fetched, f"/api/studies/{slug}/items/{'x' * 16}/ratings/", data="{}", content_type="application/json")
    _get(web, fetched, f"/studies/{world.study_y.slug}/annotate/")

    # What was shown is what was stored: the page order is the assignment's side.
    for public_id, side in shown_sides.items():
        assert Assignment.objects.get(item__public_id=public_id, annotator=world.ann_x).baseline_side == side

    ids = [str(pk) for model in (Item, Assignment, Rating) for pk in model.objects.values_list("pk", flat=True)]
    ids += [str(study.pk), str(world.study_y.pk), str(world.system.pk), str(study.challenger_system_id)]
    ids += [str(pk) for pk in Item.objects.exclude(sample=None).values_list("sample_id", flat=True)]
    secrets = [BASELINE, CHALLENGER, BASELINE_BACKBONE, CHALLENGER_BACKBONE, "SmolLM2", "bart-secretbackbone",
               "secretkey", "secretdataset", "secretconv"]
    assert len(fetched.records) > 40
    assert not fetched.find(secrets, ignore_case=True)
    assert not fetched.find(ids)
    # Not even which column is which: the words the app uses for the sides never reach annotators.
    # ("two different systems" in the instructions is fine: it names neither.)
    assert not fetched.find(["baseline", "challenger"], ignore_case=True)


def test_sides_are_balanced_per_annotator_and_each_item_gets_both_orders(db, tmp_path):
    """Three annotators rate a whole study over the API; the order each saw is read from the payloads."""
    study, n = services.study_import_jsonl(
        path=jsonl_write(tmp_path / "bal.jsonl", study_lines(9, tag="bal")), slug="balance", baseline=BASELINE,
        challenger=CHALLENGER, overlap=3, seed=5,
    )
    users = [services.annotator_add(username=f"rater{i}", password="pw-12345678", study=study) for i in range(3)]
    clients = [Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=u).key}") for u in users]
    texts = {i.public_id: i.baseline_response for i in study.items.all()}
    seen: dict[str, list[str]] = {u.username: [] for u in users}
    by_item: dict[str, list[str]] = {}
    active = list(range(3))
    while active:
        for k in list(active):
            r = clients[k].post(f"/api/studies/{study.slug}/next/")
            if r.status_code == 204:
                active.remove(k)
                continue
            payload = r.json()
            again = clients[k].post(f"/api/studies/{study.slug}/next/").json()
            assert again["response_a"] == payload["response_a"], "asking again must not reshuffle the order"
            side = "A" if payload["response_a"] == texts[payload["item"]] else "B"
            seen[users[k].username].append(side)
            by_item.setdefault(payload["item"], []).append(side)
            r = clients[k].post(f"/api/studies/{study.slug}/items/{payload['item']}/ratings/",
                                data=json.dumps(API_ANSWERS), content_type="application/json")
            assert r.status_code == 201
            sides = seen[users[k].username]
            assert abs(sides.count("A") - sides.count("B")) <= services.SIDE_BALANCE_BOUND, f"{users[k].username} saw {sides}"
    assert all(len(s) == n for s in seen.values()), "every annotator rated every item (overlap 3, 3 annotators)"
    assert len(by_item) == n
    assert all(set(s) == {"A", "B"} for s in by_item.values()), f"an item's raters all saw one order: {by_item}"
    # The answer "B" is stored canonically according to the side each rater saw.
    for r in Rating.objects.filter(item__study=study):
        assert r.shown_choice == "B" and r.choice == ("baseline" if r.baseline_side == "B" else "challenger")


def test_the_next_side_cannot_be_told_from_the_earlier_ones(db, tmp_path):
    """Issue 17, finding 6: with the old +-1 rule item 2k was always opposite item 2k-1.

    60 annotators in turns rate a 600-item study (overlap 3, 30 items each) through the real
    assignment service. Over all of them, the share of items shown in the same order as the
    annotator's previous item (and as the one before that) must be a coin's, 0.5 +- 0.05; each
    annotator stays within SIDE_BALANCE_BOUND at every step; every item's raters see both orders.
    """
    n_annotators, per_annotator, overlap = 60, 30, 3
    n_items = n_annotators * per_annotator // overlap
    study, _ = services.study_import_jsonl(
        path=jsonl_write(tmp_path / "pred.jsonl", study_lines(n_items, tag="pred")), slug="predict",
        baseline=BASELINE, challenger=CHALLENGER, overlap=overlap, seed=17,
    )
    users = [services.annotator_add(username=f"sim{i:02d}", password=None, study=study) for i in range(n_annotators)]
    seen: dict[int, list[str]] = {u.pk: [] for u in users}
    by_item: dict[int, list[str]] = {}
    for _round in range(per_annotator):
        for u in users:
            a = services.assignment_next(study=study, annotator=u)
            assert a is not None
            services.rating_submit(assignment=a, answers=[services.Answer(q, "S", 3) for q in QKEYS])
            seen[u.pk].append(a.baseline_side)
            by_item.setdefault(a.item_id, []).append(a.baseline_side)
            walk = seen[u.pk].count("A") - seen[u.pk].count("B")
            assert abs(walk) <= services.SIDE_BALANCE_BOUND, (u.username, seen[u.pk])
    lag1 = [s[i] == s[i - 1] for s in seen.values() for i in range(1, len(s))]
    lag2 = [s[i] == s[i - 2] for s in seen.values() for i in range(2, len(s))]
    same1, same2 = sum(lag1) / len(lag1), sum(lag2) / len(lag2)
    assert 0.45 <= same1 <= 0.55, f"next side equals the previous one in {same1:.3f} of {len(lag1)} items"
    assert 0.45 <= same2 <= 0.55, f"next side equals the one two back in {same2:.3f} of {len(lag2)} items"
    # The old rule's tell: an annotator's pairs (items 2k-1, 2k) were always split.
    pairs = [s[i] != s[i + 1] for s in seen.values() for i in range(0, len(s) - 1, 2)]
    assert sum(pairs) / len(pairs) <= 0.6, f"{sum(pairs)} of {len(pairs)} pairs split"
    assert len(by_item) == n_items and all(len(v) == overlap for v in by_item.values())
    assert all(set(v) == {"A", "B"} for v in by_item.values()), "an item's raters all saw one order"


def test_item_ids_are_random_not_sequential_and_not_derived_from_content(db, tmp_path):
    ids_bump(Item)  # 7-digit database ids, so "contains its id" is a meaningful check
    rows = study_lines(200, tag="ids")
    path = jsonl_write(tmp_path / "ids.jsonl", rows)
    one, _ = services.study_import_jsonl(path=path, slug="ids-1", baseline=BASELINE, challenger=CHALLENGER)
    two, _ = services.study_import_jsonl(path=path, slug="ids-2", baseline=BASELINE, challenger=CHALLENGER)
    items = list(one.items.order_by("pk").values_list("pk", "key", "public_id"))
    ids = [p for _, _, p in items]
    assert len(set(ids)) == len(ids)
    alphabet = set(string.ascii_letters + string.digits + "-_")
    for pk, key, public_id in items:
        assert len(public_id) >= 16 and set(public_id) <= alphabet
        assert str(pk) not in public_id and key not in public_id
    # The same content in another study gets other ids: they are not a hash of the item.
    assert not set(ids) & set(two.items.values_list("public_id", flat=True))
    # Not sequential: the order of the ids has nothing to do with the order of creation.
    ranks = {p: i for i, p in enumerate(sorted(ids))}
    n = len(ids)
    rho = 1 - 6 * sum((i - ranks[p]) ** 2 for i, p in enumerate(ids)) / (n * (n * n - 1))
    assert abs(rho) < 0.3, f"public ids follow creation order (Spearman rho {rho:.2f})"
    # Every position varies: no shared prefix or counter; 200 draws from 64 symbols show > 40 of them.
    for pos in range(16):
        assert len({p[pos] for p in ids}) > 40, f"position {pos} of the public ids barely varies"
    # A neighbour of a real id is just a 404, even for the annotator holding that item.
    user = services.annotator_add(username="prober", password="pw-12345678", study=one)
    held = services.assignment_next(study=one, annotator=user).item.public_id
    client = Client()
    client.force_login(user)
    neighbour = held[:-1] + ("A" if held[-1] != "A" else "B")
    assert client.get(f"/studies/{one.slug}/items/{held}/").status_code == 200
    assert client.get(f"/studies/{one.slug}/items/{neighbour}/").status_code == 404


def test_public_schema_and_docs_hold_no_study_data(linked):
    for url in ("/api/schema/", "/api/docs/"):
        text = Client().get(url).content.decode()
        for secret in (BASELINE, CHALLENGER, BASELINE_BACKBONE, linked.study_x.slug, linked.item_x.public_id, "ann-x"):
            assert secret not in text, f"{url} shows {secret!r}"


# --------------------------------------------------------------------------- giveaways


@pytest.mark.parametrize(
    "text, rule",
    [
        ("As an AI language model, I don't have pets.", "self_reference"),
        ("as an AI, I cannot go hiking", "self_reference"),
        ("I am Qwen, created by Alibaba Cloud. I love hiking!", "model_name"),
        ("I'm an AI assistant, but I'd love to hear about your cats.", "self_reference"),
        ("Sorry, I don't have personal experiences, but hiking sounds great.", "self_reference"),
        ("I was developed by OpenAI to help.", "self_reference"),
        ("ChatGPT here! Cats are great.", "model_name"),
        ("Llama-3 says hi", "model_name"),
        ("<agent> I love my cats too!", "prompt_tag"),
        ("I love my cats too!</s>", "prompt_tag"),
        ("Sure!<|im_end|>", "prompt_tag"),
        ("Agent: I walked to the park.", "prompt_tag"),
    ],
)
def test_giveaway_texts_are_flagged(text, rule):
    assert rule in {g.rule for g in text_giveaways(text)}, text


@pytest.mark.parametrize(
    "text",
    [
        "I am a teacher and I said I'd go hiking with my three cats.",
        "I love llamas and alpacas; the mistral wind was strong in Provence.",
        "My history teacher was great. I'm aiming for a marathon.",
        "I agree, the system at work is slow but my assistant manager helps.",
        "I'm a Gemini, so I love talking! Response times at my job are long.",
        "I said: 'the agent called me back'.",
    ],
)
def test_ordinary_persona_chat_is_not_flagged(text):
    assert text_giveaways(text, names=[BASELINE, CHALLENGER, "facebook/bart-base"]) == []


def test_system_and_model_names_are_flagged_whole_word_and_case_insensitive():
    names = [BASELINE, "HuggingFaceTB/SmolLM2-135M-Instruct", "PreSFT(Hist)"]
    flagged = text_giveaways(f"Hi, I am {BASELINE.upper()} and I run smollm2-135m-instruct. PreSFT(Hist) rules", names=names)
    assert {g.match.lower() for g in flagged if g.rule == "system_name"} >= {
        BASELINE.lower(), "smollm2-135m-instruct", "presft(hist)"
    }
    assert text_giveaways("my history of hiking", names=["Hist"]) == []  # too short to search for


def test_check_study_flags_giveaways_before_a_study_opens(db, tmp_path):
    rows = study_lines(5, tag="give")
    rows[1]["responses"][CHALLENGER] = "As an AI language model, I do not have cats."
    rows[3]["responses"][BASELINE] = f"<agent> I am {BASELINE} and I like parks."
    rows[4]["generic_response"] = "I'm Qwen. Parks are nice."
    services.study_import_jsonl(path=jsonl_write(tmp_path / "g.jsonl", rows), slug="give", baseline=BASELINE,
                                challenger=CHALLENGER)
    Study.objects.filter(slug="give").update(title=f"{CHALLENGER} vs baseline")
    out = StringIO()
    call_command("check_study", "give", stdout=out)
    report = json.loads(out.getvalue().strip())
    assert len(out.getvalue().strip().splitlines()) == 1
    assert report["study"] == "give" and report["items"] == 5 and report["flagged_items"] == 3
    flags = {(f["item"], f["side"], f["rule"]) for f in report["flags"]}
    assert flags == {
        ("secretkey-give-001", "challenger", "self_reference"),
        ("secretkey-give-003", "baseline", "prompt_tag"),
        ("secretkey-give-003", "baseline", "system_name"),
        ("secretkey-give-004", "generic_response", "model_name"),
        ("secretkey-give-004", "generic_response", "self_reference"),
        (None, "title", "system_name"),
    }
    assert report["by_side"]["baseline"] == 2
    with pytest.raises(CommandError, match="giveaway"):
        call_command("check_study", "give", "--fail-on-flags", stdout=StringIO())
    with pytest.raises(CommandError, match="no study 'nope'"):
        call_command("check_study", "nope", stdout=StringIO())
    # The same flags as system-check warnings, for the staff page or `check --database default`.
    study = Study.objects.get(slug="give")
    warnings = study_checks(study=study)
    assert len(warnings) == len(report["flags"]) and {w.id for w in warnings} >= {"annotation.W101", "annotation.W104"}
    assert len(giveaway_checks(databases=["default"])) == len(warnings)
    assert giveaway_checks(databases=None) == []
    # A clean study is clean.
    services.study_import_jsonl(path=jsonl_write(tmp_path / "c.jsonl", study_lines(4, tag="clean")), slug="clean",
                                baseline=BASELINE, challenger=CHALLENGER)
    assert study_giveaways(study=Study.objects.get(slug="clean")) == []
