"""``OpenAICompatibleBackend``: vLLM, SGLang, llama.cpp or hosted servers over HTTP (docs/llm.md)."""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence

from .base import Backend, BatchCallback, Completion, GenerationSettings, LLMBackendError, LLMRequestRefused, Messages

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def retry_delay(attempt: int, *, retry_after: str | None, backoff: float, max_delay: float = 60.0) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): the server's Retry-After when it
    sent one (seconds; an HTTP date counts as the backoff), else ``backoff * 2**attempt``; at most ``max_delay``."""
    if retry_after:
        try:
            return min(max(0.0, float(retry_after)), max_delay)
        except ValueError:
            pass
    return min(backoff * (2 ** attempt), max_delay)


def server_urls(text: str) -> list[str]:
    """Base URLs from ``url1,url2`` (spaces allowed); raise LLMBackendError for one that is not http(s)."""
    urls = [u.strip().rstrip("/") for u in text.split(",") if u.strip()]
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if not urls or bad:
        raise LLMBackendError(f"not a list of server base URLs: {text!r} (write http://host:port/v1[,http://...])")
    return urls


class OpenAICompatibleBackend(Backend):
    """Chat-completions servers (vLLM, SGLang, llama.cpp, a hosted API) that someone runs.

    ``base_url`` is one base URL or several separated by commas (replicas of one model): requests
    go to them round-robin. At most ``concurrency`` requests are in flight (a thread pool); a
    request answered 429 or 5xx, or timed out (or refused by one of several replicas), is retried up to ``retries`` times,
    waiting the server's Retry-After or ``backoff * 2**attempt`` seconds. The API key comes from
    ``api_key`` or ``$OPENAI_API_KEY``. Every error names the server that failed. ``usage()``
    sums the servers' reported token usage (``usage`` of each response) over this backend's life.
    """

    def __init__(self, model: str, base_url: str, *, api_key: str | None = None, timeout: float = 120.0,
                 concurrency: int | None = None, retries: int | None = None, backoff: float = 1.0,
                 top_logprobs: int = 20):
        import threading

        self.model = model
        self.base_urls = server_urls(base_url)
        self.base_url = ",".join(self.base_urls)
        self.model_id = f"openai:{model}@{self.base_url}"
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY", "")
        self.timeout = timeout
        self.concurrency = max(1, concurrency or int(os.environ.get("LLM_SERVER_CONCURRENCY", "0") or 0)
                               or 4 * len(self.base_urls))
        self.retries = retries if retries is not None else int(os.environ.get("LLM_SERVER_RETRIES", "5") or 5)
        self.backoff = backoff
        # OpenAI's API allows up to 20; vLLM's default --max-logprobs is 20 too.
        self.top_logprobs = top_logprobs
        self._lock = threading.Lock()
        self._next = 0
        self._usage = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        self._client = None
        self.sleep: Callable[[float], None] = time.sleep  # how a retry waits (a test records the waits)

    def describe(self) -> dict:
        return {**super().describe(), "base_url": self.base_url}

    def usage(self) -> dict[str, int]:
        """Requests, retries and tokens (prompt, completion, total) so far; subtract two readings for one run."""
        with self._lock:
            return dict(self._usage)

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for key, amount in amounts.items():
                self._usage[key] = self._usage.get(key, 0) + int(amount or 0)

    def _next_url(self) -> str:
        with self._lock:
            url = self.base_urls[self._next % len(self.base_urls)]
            self._next += 1
        return url

    def _http(self):
        import httpx

        with self._lock:
            if self._client is None:
                # One pooled client per backend: connections are reused across requests and threads.
                limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
                self._client = httpx.Client(timeout=self.timeout, limits=limits)
            return self._client

    def post(self, path: str, body: dict) -> tuple[str, dict]:
        """POST ``body`` as JSON to ``<next base url><path>`` and return (that url, the JSON answer).

        Retries (429, 5xx, timeouts; a refused connection when there are several servers) go to
        the next server in turn. Raises
        LLMBackendError naming the URL for an answer that stays an error, for a 4xx other than 429
        at once (the request itself is wrong: too long, unknown model), and for a body that is not JSON.
        """
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        client = self._http()
        for attempt in range(self.retries + 1):
            url = f"{self._next_url()}{path}"
            retry_after = None
            try:
                response = client.post(url, json=body, headers=headers)
            except httpx.TimeoutException as exc:
                problem = f"The LLM server at {url} did not answer within {self.timeout:g} s."
                cause = exc
            except httpx.HTTPError as exc:
                problem = f"Could not reach the LLM server at {url}: {exc}. Is it running?"
                if len(self.base_urls) == 1:  # nothing listens: waiting will not start it
                    raise LLMBackendError(problem) from exc
                cause = exc  # a replica down: the next one takes the retry
            else:
                self._count(requests=1)
                if response.status_code == 200:
                    try:
                        return url, response.json()
                    except ValueError as exc:
                        raise LLMBackendError(f"The LLM server at {url} sent no JSON: {response.text[:300]}") from exc
                problem = f"The LLM server at {url} answered HTTP {response.status_code}: {response.text[:300]}"
                cause = None
                if response.status_code not in RETRY_STATUSES:
                    raise (LLMRequestRefused if 400 <= response.status_code < 500 else LLMBackendError)(problem)
                retry_after = response.headers.get("Retry-After")
            if attempt == self.retries:
                raise LLMBackendError(f"{problem} (tried {attempt + 1} times)") from cause
            self._count(retries=1)
            self.sleep(retry_delay(attempt, retry_after=retry_after, backoff=self.backoff))
        raise AssertionError("unreachable")

    def _chat(self, messages: Messages, **fields) -> tuple[str, dict]:
        url, answer = self.post("/chat/completions", {"model": self.model, "messages": messages, **fields})
        usage = answer.get("usage") if isinstance(answer, dict) else None
        if isinstance(usage, dict):
            self._count(**{k: usage.get(k) or 0 for k in ("prompt_tokens", "completion_tokens", "total_tokens")})
        return url, answer

    def complete(self, messages: Messages, settings: GenerationSettings) -> Completion:
        body = {"max_tokens": settings.max_new_tokens, "seed": settings.seed,
                "temperature": settings.temperature if settings.do_sample else 0.0}
        if settings.do_sample:
            body["top_p"] = settings.top_p
        url, answer = self._chat(messages, **body)
        try:
            choice = answer["choices"][0]
            finish = choice.get("finish_reason")
            return Completion(choice["message"]["content"] or "", hit_limit=None if finish is None else finish == "length")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMBackendError(f"The LLM server at {url} sent no chat completion: {str(answer)[:300]}") from exc

    def _in_pool(self, work: Callable, items: Sequence, *, window: int, on_window: Callable | None = None) -> list:
        """``work(item)`` for every item, at most ``concurrency`` at once, in windows of ``window`` items.

        ``on_window(indices, results)`` runs after each window; an exception it raises (``Cancelled``
        from a job's progress callback) or one from ``work`` stops the rest: requests not yet sent
        are dropped, the ones in flight finish.
        """
        from concurrent.futures import ThreadPoolExecutor

        results: list = []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for start in range(0, len(items), window):
                chunk = list(items[start:start + window])
                futures = [pool.submit(work, item) for item in chunk]
                try:
                    got = [f.result() for f in futures]
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
                results.extend(got)
                if on_window is not None:
                    on_window(list(range(start, start + len(chunk))), got)
        return results

    def generate(
        self, prompts: Sequence[Messages], *, settings: GenerationSettings = GenerationSettings(),
        batch_size: int = 8, on_batch: BatchCallback | None = None,
    ) -> list[str]:
        # The servers batch concurrent requests themselves; on_batch (progress, cancel) runs
        # every max(batch_size, concurrency) prompts.
        return self._in_pool(lambda m: self.complete(m, settings), prompts,
                             window=max(1, batch_size, self.concurrency), on_window=on_batch)

    def score_options(self, groups, options, *, prefix_cache: bool = True, max_batch: int = 8):
        """Option masses of chat prompts from one output token's top log-probabilities.

        ``groups`` / ``options`` / result as ``TransformersBackend.score_options``. Each prompt is
        one chat completion with ``max_tokens=1``, ``temperature=0``, ``logprobs=true`` and
        ``top_logprobs``; an option's mass is the summed probability of the returned top tokens
        that spell it (exact text, so " A" and "a" count, "Apple" does not). An option outside
        the top ones counts 0: with 20 returned, a missed option holds less than the 20th token's
        probability, so the mass is low by at most that much per spelling. The prefix cache is
        the server's own (vLLM ``--enable-prefix-caching``, llama.cpp's slot cache);
        ``prefix_cache`` and ``max_batch`` are accepted for the same call and ignored.
        A 4xx answer (a prompt too long for the server) is that prompt's error; a server that
        stays unreachable or busy after the retries raises LLMBackendError.
        """
        from ..scoring import OptionMass  # lazy: scoring imports kv_cache (a cycle at import time)

        spelled = {spelling: option for option, spellings in options.items() for spelling in spellings}

        def one(messages: Messages) -> OptionMass:
            try:
                url, answer = self._chat(messages, max_tokens=1, temperature=0.0, logprobs=True,
                                         top_logprobs=self.top_logprobs)
            except LLMRequestRefused as exc:  # this prompt (too long?), not the server: record, go on
                return OptionMass(None, error=str(exc)[:2000])
            n_tokens = int((answer.get("usage") or {}).get("prompt_tokens") or 0)
            try:
                top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
                masses = dict.fromkeys(options, 0.0)
                seen = set()
                for entry in top:
                    token = entry["token"]
                    if token in spelled and token not in seen:
                        seen.add(token)
                        masses[spelled[token]] += math.exp(float(entry["logprob"]))
            except (KeyError, IndexError, TypeError, ValueError):
                return OptionMass(None, n_tokens=n_tokens, error=(
                    f"The LLM server at {url} sent no top log-probabilities (does it support logprobs?): "
                    f"{str(answer)[:300]}"))
            return OptionMass(masses, n_tokens=n_tokens)

        flat = [messages for group in groups for messages in group]
        got = self._in_pool(one, flat, window=max(1, len(flat)))
        results, at = [], 0
        for group in groups:
            results.append(got[at:at + len(group)])
            at += len(group)
        return results


