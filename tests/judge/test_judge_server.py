"""The judge over a real llama.cpp server (SmolLM2 Q4_1) against the in-process judge (float32
weights dequantised from the same GGUF) on real SPC items."""
import pytest

from judge.models import JudgeVerdict
from judge.services import judge_run_create, judge_run_execute
from tests.judge.conftest import study_make

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

# Measured on 6 SPC items x 4 questions x 2 orders (48 prompts, prompt v2): the choices agreed on
# all 48, the renormalised probabilities differed by at most 0.047 (median 0.019) and the option
# mass by at most 0.060 (docs/results.md). 4-bit weights against float32: the tolerance is twice that.
PROBABILITY_TOLERANCE = 0.1
OPTION_MASS_TOLERANCE = 0.12


def _verdicts(run):
    return {(v.item.key, v.question, v.baseline_side): v for v in JudgeVerdict.objects.filter(run=run).select_related("item")}


def test_the_judge_over_a_llama_cpp_server_agrees_with_the_in_process_judge(llama_server, spc_pairs):
    study = study_make(spc_pairs[:4])
    local = judge_run_create(study=study, model_id="smollm2", name="LLM-local")
    server = judge_run_create(study=study, model_id=f"openai:smollm2@{llama_server}", name="LLM-server")
    judge_run_execute(run=local)
    summary = judge_run_execute(run=server)
    assert summary["failed"] == 0
    # Token usage of the run, summed from the server's answers: one request (one output token) per prompt.
    assert summary["usage"]["requests"] == 32 and summary["usage"]["completion_tokens"] == 32
    assert summary["usage"]["prompt_tokens"] > 32 * 100
    ours, theirs = _verdicts(local), _verdicts(server)
    assert set(ours) == set(theirs) and len(ours) == 4 * 4 * 2
    agree = sum(ours[k].raw["choice"] == theirs[k].raw["choice"] for k in ours) / len(ours)
    assert agree >= 0.9
    for key in ours:
        for option, p in ours[key].probabilities.items():
            assert theirs[key].probabilities[option] == pytest.approx(p, abs=PROBABILITY_TOLERANCE), key
        assert theirs[key].option_mass == pytest.approx(ours[key].option_mass, abs=OPTION_MASS_TOLERANCE)
        # The same abstention rule on both: SmolLM2's options hold well under the default 0.5.
        assert theirs[key].abstained == (theirs[key].option_mass < server.min_option_mass)


def test_llm_server_url_sends_a_run_of_a_local_model_name_to_the_server(llama_server, spc_pairs, monkeypatch):
    from modeling.llm.backends import backend_for

    monkeypatch.setenv("LLM_SERVER_URL", llama_server)
    backend_for.cache_clear()
    try:
        study = study_make(spc_pairs[:1], slug="judge-served")
        run = judge_run_create(study=study, model_id="smollm2", name="LLM-served")
        # Another model id than the in-process judge's: its verdicts never mix with in-process ones.
        assert run.model_id == f"openai:smollm2@{llama_server}"
        summary = judge_run_execute(run=run)
    finally:
        backend_for.cache_clear()
    assert JudgeVerdict.objects.filter(run=run, failed=False).count() == 8
    assert summary["failed"] == 0 and summary["usage"]["requests"] == 8
