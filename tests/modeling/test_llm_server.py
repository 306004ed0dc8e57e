"""The server backend against real servers: a llama.cpp server with SmolLM2, and tiny HTTP servers
on loopback sockets that answer what a busy or broken server answers (429, 503, Retry-After)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from judge.scoring import OPTION_SPELLINGS
from modeling.llm.backends import (
    GenerationSettings,
    LLMBackendError,
    LLMRequestRefused,
    OpenAICompatibleBackend,
    backend_for,
    served_model_id,
)
from modeling.progress import Cancelled
from tests.conftest import free_port

SHORT = GenerationSettings(max_new_tokens=8)
JUDGE_LIKE = [{"role": "system", "content": "Answer with a single letter: A, B or S."},
              {"role": "user", "content": "Response A: 'Hello! How are you?'\nResponse B: 'go away'\n"
                                          "Which response is more polite? Answer A, B or S (similar)."}]


def _completion(content="ok", *, top=None, usage=(10, 1)):
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if top is not None:
        choice["logprobs"] = {"content": [{"token": top[0][0], "logprob": top[0][1],
                                           "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}]}
    return {"choices": [choice], "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                           "total_tokens": sum(usage)}}


class ScriptedServer:
    """A real HTTP server in a thread answering POSTs from a script of (status, headers, body), then 200s."""

    def __init__(self, script=(), *, body=None):
        self.script, self.requests = list(script), []
        self.body = body or _completion()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append(json.loads(self.rfile.read(length)))
                status, headers, body = server.script.pop(0) if server.script else (200, {}, server.body)
                payload = json.dumps(body).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    servers = []

    def make(*args, **kwargs):
        servers.append(ScriptedServer(*args, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def _backend(url, **kwargs):
    backend = OpenAICompatibleBackend("smollm2", url, **kwargs)
    backend.waits = []
    backend.sleep = backend.waits.append  # record the waits instead of sleeping them
    return backend


def test_busy_answers_are_retried_honouring_retry_after_then_backing_off(scripted):
    server = scripted([(429, {"Retry-After": "7"}, {"error": "busy"}), (503, {}, {"error": "loading"}),
                       (502, {}, {"error": "bad gateway"})])
    backend = _backend(server.url, backoff=0.5)
    assert backend.generate([[{"role": "user", "content": "hi"}]], settings=SHORT) == ["ok"]
    # Retry-After of the 429 is honoured; then 0.5 * 2**attempt.
    assert backend.waits == [7.0, 1.0, 2.0]
    assert len(server.requests) == 4
    assert backend.usage() == {"requests": 4, "retries": 3, "prompt_tokens": 10, "completion_tokens": 1,
                               "total_tokens": 11}


def test_a_server_that_stays_busy_fails_with_its_url_and_the_tries(scripted):
    server = scripted([(503, {}, {"error": "overloaded"})] * 10)
    backend = _backend(server.url, retries=2)
    with pytest.raises(LLMBackendError, match=rf"LLM server at {server.url}/chat/completions answered HTTP 503.*tried 3 times"):
        backend.generate([[{"role": "user", "content": "hi"}]], settings=SHORT)
    assert len(server.requests) == 3 and backend.waits == [1.0, 2.0]


def test_a_refused_request_is_not_retried_and_names_the_server(scripted):
    server = scripted([(400, {}, {"error": "context length exceeded"})])
    backend = _backend(server.url)
    with pytest.raises(LLMRequestRefused, match=rf"{server.url}/chat/completions answered HTTP 400.*context length"):
        backend.generate([[{"role": "user", "content": "hi"}]], settings=SHORT)
    assert len(server.requests) == 1 and backend.waits == []


def test_a_closed_port_fails_at_once_naming_it_and_a_replica_that_is_down_is_skipped(scripted):
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = _backend(url)
    with pytest.raises(LLMBackendError, match=rf"Could not reach the LLM server at {url}/chat/completions.*Is it running"):
        backend.generate([[{"role": "user", "content": "hi"}]], settings=SHORT)
    assert backend.waits == []
    up = scripted()
    replicas = _backend(f"{url},{up.url}", concurrency=1)
    assert replicas.generate([[{"role": "user", "content": f"hi {i}"}] for i in range(3)], settings=SHORT) == ["ok"] * 3
    assert len(up.requests) == 3 and replicas.usage()["retries"] >= 1


def test_requests_go_round_robin_over_the_servers_of_one_model_id(scripted, monkeypatch):
    first, second = scripted(), scripted()
    backend_for.cache_clear()
    backend = backend_for(f"openai:smollm2@{first.url},{second.url}")
    assert backend.base_urls == [first.url, second.url]
    backend.generate([[{"role": "user", "content": f"hi {i}"}] for i in range(6)], settings=SHORT, batch_size=2)
    assert (len(first.requests), len(second.requests)) == (3, 3)
    # One setting points every local model name at the server(s).
    monkeypatch.setenv("LLM_SERVER_URL", f"{first.url}, {second.url}")
    assert served_model_id("smollm2") == f"openai:smollm2@{first.url},{second.url}"
    assert backend_for("smollm2").base_urls == [first.url, second.url]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert OpenAICompatibleBackend("m", first.url).api_key == "sk-test"
    backend_for.cache_clear()


def test_a_cancelled_generation_sends_no_more_requests(scripted):
    server = scripted()
    backend = _backend(server.url, concurrency=2)

    def cancel(indices, texts):
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        backend.generate([[{"role": "user", "content": f"hi {i}"}] for i in range(10)], settings=SHORT,
                         batch_size=2, on_batch=cancel)
    assert len(server.requests) == 2


def test_option_masses_sum_every_spelling_among_the_top_tokens(scripted):
    import math

    top = [("A", math.log(0.4)), (" A", math.log(0.1)), ("B", math.log(0.2)), ("The", math.log(0.15)),
           ("s", math.log(0.05)), ("Apple", math.log(0.05))]
    server = scripted(body=_completion("A", top=top))
    [[mass]] = _backend(server.url).score_options([[JUDGE_LIKE]], OPTION_SPELLINGS)
    assert mass.masses == pytest.approx({"A": 0.5, "B": 0.2, "S": 0.05})
    assert mass.total == pytest.approx(0.75) and mass.n_tokens == 10
    request = server.requests[0]
    assert (request["max_tokens"], request["logprobs"], request["top_logprobs"], request["temperature"]) == (1, True, 20, 0.0)


def test_a_server_without_logprobs_is_a_scoring_error_naming_it(scripted):
    server = scripted()  # answers a completion without logprobs
    [[mass]] = _backend(server.url).score_options([[JUDGE_LIKE]], OPTION_SPELLINGS)
    assert mass.masses is None and server.url in mass.error and "log-probabilities" in mass.error


@pytest.mark.slow
def test_generation_over_a_llama_cpp_server_counts_its_tokens(llama_server):
    backend = OpenAICompatibleBackend("smollm2", llama_server)
    texts = backend.generate([[{"role": "user", "content": "Say hello."}], [{"role": "user", "content": "Name a colour."}]],
                             settings=SHORT)
    assert len(texts) == 2 and all(t.strip() for t in texts)
    assert all(t.hit_limit in (True, False) for t in texts)
    usage = backend.usage()
    assert usage["requests"] == 2 and usage["completion_tokens"] <= 16 and usage["prompt_tokens"] > 10


@pytest.mark.slow
def test_option_scoring_over_a_llama_cpp_server_matches_in_process_on_a_clear_prompt(llama_server):
    from modeling.llm.backends import TransformersBackend

    server = OpenAICompatibleBackend("smollm2", llama_server)
    [[remote]] = server.score_options([[JUDGE_LIKE]], OPTION_SPELLINGS)
    [[local]] = TransformersBackend("smollm2", cpu_threads=1).score_options([[JUDGE_LIKE]], OPTION_SPELLINGS)
    assert remote.error == "" and 0 < remote.total <= 1
    # The same prompt tokens on both sides: the GGUF's chat template and tokenizer.
    assert remote.n_tokens == local.n_tokens
    assert max(remote.probabilities, key=remote.probabilities.get) == max(local.probabilities, key=local.probabilities.get)
    for option in OPTION_SPELLINGS:
        assert remote.probabilities[option] == pytest.approx(local.probabilities[option], abs=0.1)


@pytest.mark.slow
@pytest.mark.django_db
def test_augmentation_and_icl_run_end_to_end_over_a_llama_cpp_server(llama_server):
    from modeling.importers.service import dataset_import
    from modeling.llm_services import augment_dataset, icl_generate
    from modeling.models import Dataset, LLMCache, System
    from tests.conftest import shared_file

    dataset_import(kind="spc", path=shared_file("spc/Synthetic-Persona-Chat_valid.csv"), limit=1, split="train")
    dataset_import(kind="spc", path=shared_file("spc/Synthetic-Persona-Chat_test.csv"), limit=1, split="test")
    dataset = Dataset.objects.get(name="spc")
    server = OpenAICompatibleBackend("smollm2", llama_server)
    model_id = f"openai:smollm2@{llama_server}"
    summary = augment_dataset(dataset=dataset, split="test", limit=2, backend=server, settings=SHORT)
    assert (summary["model"], summary["generated"], summary["empty"]) == (model_id, 2, 0)
    samples = list(dataset.samples.filter(split="test").order_by("pk")[:2])
    assert all(s.generic_response.strip() and s.generic_model == model_id for s in samples)
    assert LLMCache.objects.filter(model_id=model_id).count() == 2
    systems = icl_generate(dataset=dataset, split="test", method="icl_hist", n_shot=1, seeds=[0], limit=2,
                           backend=server, settings=SHORT)
    assert [s.status for s in systems] == [System.Status.GENERATED]
    assert systems[0].responses.count() == 2 and all(r.text.strip() for r in systems[0].responses.all())
    assert server.usage()["requests"] == 4
