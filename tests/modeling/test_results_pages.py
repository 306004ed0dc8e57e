"""/results/ as a researcher uses it: systems link to their page, the systems table downloads,
headers carry units, and ablation plots offer only methods that train with the swept parameter."""
import csv
import io
import json

import pytest
from django.contrib.auth import get_user_model

from modeling.models import Conversation, Dataset, MetricResult, Response, Sample, System
from tests.modeling.test_tables import spc_systems, store  # noqa: F401 (fixture)


@pytest.fixture
def staff_client(client, db):
    client.force_login(get_user_model().objects.create_user("boss", password="pw", is_staff=True))
    return client


def test_systems_link_to_their_page_and_headers_carry_units(staff_client, spc_systems):  # noqa: F811
    page = staff_client.get("/results/").content.decode()
    for system in spc_systems.values():
        assert f'href="/results/systems/{system.pk}/"' in page
    assert 'BLEU<br><span class="unit">0–100</span>' in page
    assert 'BPC<br><span class="unit">bits/char, lower is better</span>' in page
    assert 'ROUGE-2<br><span class="unit">0–1</span>' in page


def test_the_systems_table_downloads_as_csv_and_json_with_the_pages_filters(staff_client, spc_systems):  # noqa: F811
    ed = Dataset.objects.create(name="ed", kind=Dataset.Kind.ED)
    System.objects.create(name="ed-postgrag", method="postgrag", dataset=ed)  # no metrics yet: still listed
    page = staff_client.get("/results/").content.decode()
    assert 'href="/results/systems.csv?"' in page and 'href="/results/systems.json?"' in page
    response = staff_client.get("/results/systems.csv")
    assert response["Content-Disposition"] == 'attachment; filename="systems-test.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {r["system"] for r in rows} == {*(s.name for s in spc_systems.values()), "ed-postgrag"}
    postgrag = next(r for r in rows if r["system"] == "spc-postgrag")
    assert float(postgrag["BLEU"]) == pytest.approx(21.086) and postgrag["method"] == "PostGRAG"
    only_spc = json.loads(staff_client.get("/results/systems.json?dataset=spc&q=grag").content)
    assert sorted(r["system"] for r in only_spc["rows"]) == ["spc-postgrag", "spc-pregrag"]


@pytest.fixture
def system_with_responses(db):
    dataset = Dataset.objects.create(name="spc", kind=Dataset.Kind.SPC)
    system = System.objects.create(name="spc-postgrag", method="postgrag", dataset=dataset, backbone="smollm2",
                                   config={"lr": 0.0001, "beta": 0.01, "checkpoint_dir": "/srv/secret/models/x"})
    store(system, [0.366, 0.438, 0.288, 0.423, 21.086, 0.403, 0.741, 0.734, 0.735])
    conversation = Conversation.objects.create(dataset=dataset, split="test", source_id="c1", turns=[])
    for i in range(45):
        sample = Sample.objects.create(
            dataset=dataset, conversation=conversation, split="test", turn_index=i, key=f"spc/test/c1/{i:02d}",
            history=[{"role": "user", "text": f"Question {i} about my dogs?"}],
            reference=f"reference {i} about baking", generic_response=f"generic {i} that sounds nice")
        Response.objects.create(system=system, sample=sample, text=f"answer {i}" + (" with bread" if i == 7 else ""))
    return system


def test_a_system_page_shows_config_metrics_and_responses_beside_reference_and_generic(staff_client, system_with_responses):
    system = system_with_responses
    page = staff_client.get(f"/results/systems/{system.pk}/").content.decode()
    assert ">Learning rate</th><td>0.0001</td>" in page and "/srv/secret" not in page
    assert "21.086" in page and "0–100" in page
    assert "45 responses." in page and "page 1 of 3" in page
    assert "answer 0" in page and "reference 0 about baking" in page and "generic 0 that sounds nice" in page
    assert "answer 20" not in page
    second = staff_client.get(f"/results/systems/{system.pk}/?page=2").content.decode()
    assert "answer 20" in second and "answer 0<" not in second
    found = staff_client.get(f"/results/systems/{system.pk}/?q=bread").content.decode()
    assert "1 response matching" in found and "answer 7 with bread" in found and "answer 8" not in found


def test_results_pages_are_staff_only(client, system_with_responses):
    for url in (f"/results/systems/{system_with_responses.pk}/", "/results/systems.csv"):
        assert client.get(url).status_code == 302
    client.force_login(get_user_model().objects.create_user("annotator", password="pw"))
    for url in (f"/results/systems/{system_with_responses.pk}/", "/results/systems.csv"):
        assert client.get(url).status_code == 403


@pytest.fixture
def sweep_with_presft(db):
    """A beta sweep of PreGRAG, plus PreSFT(Hist) runs that store beta but never train with it."""
    spc = Dataset.objects.create(name="spc", kind=Dataset.Kind.SPC)
    for i, (method, beta, rouge2) in enumerate([("pregrag", 0.0, 0.27), ("pregrag", 0.05, 0.29),
                                                ("presft_hist", 0.0, 0.40), ("presft_hist", 0.05, 0.41)]):
        system = System.objects.create(name=f"spc-{method}-{i}", method=method, dataset=spc,
                                       config={"alpha": 0.5, "beta": beta, "lr": 1e-4})
        MetricResult.objects.create(system=system, split="test", name="rouge2", value=rouge2)


def test_ablation_offers_and_plots_only_methods_that_train_with_the_parameter(staff_client, sweep_with_presft):
    beta = staff_client.get("/results/ablation/?param=beta&metric=rouge2&split=test").content.decode()
    assert 'value="pregrag"' in beta and 'value="postgrag"' in beta and 'value="presft_hist"' not in beta
    assert "0.2900" in beta and "0.4100" not in beta  # PreSFT(Hist)'s figures are no beta point
    alpha = staff_client.get("/results/ablation/?param=alpha&metric=rouge2&split=test").content.decode()
    assert 'value="postgrag"' in alpha and 'value="pregrag"' not in alpha
    asked = staff_client.get("/results/ablation/?param=beta&metric=rouge2&method=presft_hist&split=test").content.decode()
    assert "PreSFT(Hist) does not train with β; choose PreGRAG or PostGRAG." in asked
