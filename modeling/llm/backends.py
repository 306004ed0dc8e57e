"""Generation backends: one interface for every caller of a large instruct model.

``Backend.generate(prompts, settings=..., batch_size=..., progress=...)`` takes chat prompts (lists
of ``{"role", "content"}`` messages) and returns one raw completion per prompt, in order: a
``Completion`` (a str that also says whether it stopped at max_new_tokens).

- ``TransformersBackend``: a local model through transformers (CUDA: 4-bit NF4 or bf16; CPU:
  float32), the tokenizer's chat template, batched generation with left padding and batches
  sorted by prompt length (so a batch pads little). ``model_and_tokenizer()`` hands the loaded
  model to callers that score with their own forward passes (the LLM judge).
- ``OpenAICompatibleBackend``: vLLM, SGLang, llama.cpp or hosted servers someone runs, over
  HTTP (``/v1/chat/completions``): replicas round-robin, bounded concurrency, retries with
  backoff honouring Retry-After, token usage, errors that name the server.

Both also score options (``score_options``: the next-token probability of each answer option,
the LLM judge's capability; ``scoring.py``).

``backend_for(model_id)`` picks one and keeps it per process: ``openai:<model>@<url>[,<url>]``
names servers, anything else a local model (see ``loading.resolve_model``), or the servers of
``$LLM_SERVER_URL`` when that is set.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from common.threads import torch_threads_apply

from .loading import SMOLLM2, load_causal_lm, load_tokenizer

Messages = list[dict]
# Below this many shared tokens a separate prefix pass costs more than it saves.
MIN_SHARED_PREFIX = 16
BatchCallback = Callable[[list[int], list[str]], None]  # (prompt indices, raw outputs) of one finished batch


class Completion(str):
    """A raw completion: the text itself (a str), plus whether generation stopped at max_new_tokens.

    ``hit_limit`` is True when the model was still writing when the token limit ended it, False
    when it stopped by itself (end-of-sequence), None when the backend cannot tell. Callers that
    only need the text use it as a str; the generation services record ``hit_limit`` among an
    output's degenerate-output flags (modeling.text.degenerate_flags).
    """

    hit_limit: bool | None

    def __new__(cls, text: str, *, hit_limit: bool | None = None):
        obj = super().__new__(cls, text)
        obj.hit_limit = hit_limit
        return obj

    def __reduce__(self):
        return (_completion, (str(self), self.hit_limit))


def _completion(text: str, hit_limit: bool | None) -> Completion:
    return Completion(text, hit_limit=hit_limit)


def stopped_at_limit(rows, *, stop_ids: set[int], max_new_tokens: int) -> list[bool]:
    """Per row of generated token ids (a 2-D tensor of new tokens only): did it hit max_new_tokens?

    A row that ended by itself holds an end-of-sequence token and then pads; a row still going
    when generation stopped has neither as its last token, and that only happens at the limit.
    """
    if rows.shape[1] < max_new_tokens:
        return [False] * rows.shape[0]
    return [int(row[-1]) not in stop_ids for row in rows]


def stop_token_ids(model, tokenizer) -> set[int]:
    """Token ids that end a generation or pad after its end: the model's eos ids, the tokenizer's eos and pad."""
    ids = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None),
                  tokenizer.eos_token_id, tokenizer.pad_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


class LLMBackendError(RuntimeError):
    """A backend could not produce a generation; the message says which server or model and why."""


class LLMRequestRefused(LLMBackendError):
    """A server refused one request as wrong (HTTP 4xx other than 429: too long, unknown model); not retried."""


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode. Greedy by default, as in the paper's augmentation and ICL runs."""

    max_new_tokens: int = 64  # generic responses and ICL replies are one utterance
    do_sample: bool = False  # greedy unless asked: reruns give the same text
    temperature: float = 1.0  # sampling only
    top_p: float = 1.0  # sampling only
    top_k: int = 0  # sampling only; 0 = off
    repetition_penalty: float = 1.0
    seed: int = 0  # seeds sampling (and anything random in generate)

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """A stable text for cache keys: a different setting is a different generation."""
        return json.dumps(self.as_dict(), sort_keys=True)


def prompt_hash(*, messages: Messages, settings: GenerationSettings) -> str:
    """sha256 of the rendered prompt and the generation settings (the LLMCache key)."""
    payload = json.dumps({"messages": messages, "settings": settings.as_dict()}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Backend:
    model_id: str

    def generate(
        self, prompts: Sequence[Messages], *, settings: GenerationSettings = GenerationSettings(),
        batch_size: int = 8, on_batch: BatchCallback | None = None,
    ) -> list[str]:
        raise NotImplementedError

    def score_options(self, groups: Sequence[Sequence[Messages]], options, *, prefix_cache: bool = True,
                      max_batch: int = 8) -> list[list]:
        """Per chat prompt, the next-token probability each option got (``scoring.OptionMass``).

        ``groups``: lists of chat prompts (each a list of messages); prompts of one group share a
        long prefix (the judge: one item), which a backend may encode once. ``options``: option ->
        the texts that spell it (``{"A": ("A", "a", " A", " a"), ...}``). Returns, in the shape of
        ``groups``, one ``OptionMass`` per prompt (per-option masses before renormalising, or an
        error for a prompt that could not be scored). See ``modeling.llm.scoring``.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot score options")

    def usage(self) -> dict[str, int]:
        """Token usage reported by a server so far (empty in-process)."""
        return {}

    def describe(self) -> dict:
        return {"model_id": self.model_id, "backend": type(self).__name__}


class TransformersBackend(Backend):
    """A local causal LM, loaded once per process by ``loading.load_causal_lm``."""

    def __init__(self, model_id: str = SMOLLM2, *, device: str | None = None, quantization: str = "auto",
                 cpu_threads: int | None = None, prefix_cache: bool = True, prefill_rows: int | None = None):

        self.model_id = model_id
        self.prefix_cache = prefix_cache
        self.quantization = quantization
        self.model = load_causal_lm(model_id, device=device, quantization=quantization)
        self.tokenizer = load_tokenizer(model_id)
        self.device = next(self.model.parameters()).device
        # How many prompts of a batch share one prompt pass. On CPU a pass over a whole batch of
        # 16 spends about a fifth of its work on pads and on activations too large for the cache;
        # passes of 8 (or 4: the same within noise) similar-length prompts, whose caches are then
        # decoded together, took the prompt pass of llm_throughput's 64 prompts from 43 s to 36 s.
        # 8 leaves batches of 8 whole. A GPU wants one wide pass.
        # LLM_PREFILL_ROWS overrides it (0: one pass per batch).
        if prefill_rows is None:
            configured = os.environ.get("LLM_PREFILL_ROWS", "")
            prefill_rows = int(configured) if configured.strip() else (8 if self.device.type == "cpu" else 0)
        self.prefill_rows = prefill_rows
        # On a CPU shared with other busy processes, torch's OpenMP threads spin-wait on each
        # other and a forward pass gets >10x slower; LLM_CPU_THREADS=1 avoids that.
        if self.device.type == "cpu":
            torch_threads_apply(cpu_threads or None)

    def model_and_tokenizer(self):
        """The loaded model and tokenizer, for callers that run their own forward passes."""
        return self.model, self.tokenizer

    def score_options(self, groups, options, *, prefix_cache: bool = True, max_batch: int = 8):
        """In-process option scoring: one forward pass per prompt, each group's shared prefix encoded once.

        See ``Backend.score_options``; the engine is ``scoring.score_token_groups``. Prompts are
        cut at the answer position (``scoring.encode_messages``) with the first option's first spelling.
        """
        from .scoring import encode_messages, first_answer, score_token_groups

        answer = first_answer(options)
        encoded = [[encode_messages(self.tokenizer, m, answer=answer) for m in group] for group in groups]
        return score_token_groups(self.model, self.tokenizer, encoded, options, prefix_cache=prefix_cache,
                                  max_batch=max_batch)

    def describe(self) -> dict:
        return {**super().describe(), "device": str(self.device), "dtype": str(self.model.dtype).removeprefix("torch."),
                "quantization": self.quantization}

    def encode(self, messages: Messages) -> list[int]:
        """Token ids of a chat prompt, rendered by the tokenizer's own chat template."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise LLMBackendError(
                f"Model {self.model_id!r} has no chat template in its tokenizer: it is not an instruct/chat "
                "model. Use an instruct model (e.g. meta-llama/Llama-3.1-8B-Instruct) or smollm2."
            )
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])

    def generate(
        self, prompts: Sequence[Messages], *, settings: GenerationSettings = GenerationSettings(),
        batch_size: int = 8, on_batch: BatchCallback | None = None,
    ) -> list[str]:
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        encoded = [self.encode(m) for m in prompts]
        if not encoded:
            return []
        prefix, prefix_cache = self.shared_prefix(encoded)
        # Longest first: similar lengths share a batch (little padding), and a too-long batch
        # fails at the start rather than after an hour.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        outputs: list[str] = [""] * len(encoded)
        kwargs = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                  "pad_token_id": self.tokenizer.pad_token_id, "repetition_penalty": settings.repetition_penalty}
        if settings.do_sample:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k or None)
        else:  # silence the model's own sampling defaults (SmolLM2 ships temperature/top_p)
            kwargs.update(temperature=None, top_p=None, top_k=None)
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            input_ids, attention, cache = self.prompt_pass(
                [encoded[i] for i in indices], prefix=prefix, prefix_cache=prefix_cache,
                room=settings.max_new_tokens,
            )
            torch.manual_seed(settings.seed)
            with torch.inference_mode():
                generated = self.model.generate(input_ids=input_ids, attention_mask=attention, cache=cache, **kwargs)
            new_tokens = generated[:, input_ids.shape[1]:].cpu()
            at_limit = stopped_at_limit(new_tokens, stop_ids=stop_token_ids(self.model, self.tokenizer),
                                        max_new_tokens=settings.max_new_tokens)
            texts = [Completion(text, hit_limit=hit) for text, hit in
                     zip(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True), at_limit)]
            for i, text in zip(indices, texts):
                outputs[i] = text
            if on_batch is not None:
                on_batch(indices, texts)
        return outputs

    def shared_prefix(self, encoded: Sequence[Sequence[int]]):
        """(length, one-row key/value cache) of what all prompts of a call start with; (0, None) if little.

        The prompts of one call share their system prompt (and ICL demonstrations): that prefix
        is encoded once and every batch starts from a copy of its cache. On CPU the prompt pass,
        not decoding, dominates the cost of a short reply.
        """
        import torch

        prefix = common_prefix_length(encoded) if self.prefix_cache else 0
        prefix = min(prefix, min(len(ids) for ids in encoded) - 1)  # every prompt keeps a token to encode
        if prefix < MIN_SHARED_PREFIX:
            return 0, None
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([list(encoded[0][:prefix])], device=self.device), use_cache=True)
        return prefix, (out.cache if "cache" in out else out.past_key_values)

    def prompt_pass(self, rows: Sequence[Sequence[int]], *, prefix: int, prefix_cache, room: int):
        """Input ids, attention mask and key/value cache (with ``room`` free positions) for one batch.

        Pads go left of each prompt's own part (after the shared prefix), so every row ends at its
        last prompt token; positions come from the attention mask, so they skip the pads. Where
        ``prefill_rows`` splits the batch, the cache already holds all but the last column.
        """
        import torch

        suffixes = [list(ids[prefix:]) for ids in rows]
        suffix_ids, suffix_mask = left_pad(suffixes, self.tokenizer.pad_token_id)
        width = suffix_ids.shape[1]
        input_ids = torch.cat([torch.tensor(list(rows[0][:prefix]), dtype=torch.long).expand(len(rows), prefix),
                               suffix_ids], dim=1)
        attention = torch.cat([torch.ones((len(rows), prefix), dtype=torch.long), suffix_mask], dim=1)
        cache = reserved_cache(self.model.config, capacity=prefix + width + room, batch_size=len(rows),
                               prefix=prefix_cache)
        if 0 < self.prefill_rows < len(rows):
            self._prefill_in_parts(cache, suffixes, prefix=prefix, width=width, prefix_cache=prefix_cache)
        return input_ids.to(self.device), attention.to(self.device), cache

    def _prefill_in_parts(self, cache, suffixes: list[list[int]], *, prefix: int, width: int, prefix_cache) -> None:
        """Run the prompt pass of one batch ``prefill_rows`` prompts at a time, into ``cache``.

        Every row is right-aligned (pads left of its own part), so the last column holds every
        prompt's last token. The parts encode all but that column, each padded only to its own
        longest prompt, and their keys/values are written into the batch's cache at the columns
        the full batch would use; the pad columns in between are zero and masked. ``generate``
        then finds ``prefix + width - 1`` positions cached and starts from the last column.
        """
        import torch

        layers = cache.layers
        for start in range(0, len(suffixes), self.prefill_rows):
            part = suffixes[start:start + self.prefill_rows]
            # The last column is left to generate.
            input_ids, part_mask = left_pad([ids[:-1] for ids in part], self.tokenizer.pad_token_id)
            part_width = input_ids.shape[1]
            rows = slice(start, start + len(part))
            if part_width == 0:
                continue
            attention = torch.cat([torch.ones((len(part), prefix), dtype=torch.long), part_mask], dim=1)
            positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, prefix:]
            part_cache = reserved_cache(self.model.config, capacity=prefix + part_width, batch_size=len(part),
                                        prefix=prefix_cache)
            with torch.inference_mode():
                self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                           position_ids=positions.to(self.device), cache=part_cache, use_cache=True, logits_to_keep=1)
            column = prefix + width - 1 - part_width
            for layer, filled in zip(layers, part_cache.layers):
                layer.write(rows, column, filled.keys[:, :, prefix:], filled.values[:, :, prefix:])
        for layer in layers:
            layer.set_length(prefix + width - 1)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int):
    """(ids, attention mask) of token-id rows on CPU, pads on the left so every row ends in the last column."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def reserved_cache(config, *, capacity: int, batch_size: int, prefix=None):
    """A key/value cache for one generate call whose layers write into buffers of ``capacity`` positions.

    ``prefix`` (a one-row cache of the shared prompt prefix) is copied into every row.
    """
    from transformers import DynamicCache

    reserved_layer = _reserved_layer_class()
    layers = [reserved_layer(capacity, batch_size) for _ in range(config.get_text_config(decoder=True).num_hidden_layers)]
    if prefix is not None:
        for layer, cached in zip(layers, prefix.layers):
            layer.update(cached.keys.expand(batch_size, -1, -1, -1), cached.values.expand(batch_size, -1, -1, -1))
    cache = DynamicCache()
    cache.layers = layers
    return cache


@functools.cache
def _reserved_layer_class():
    # Built on first use: transformers is imported lazily (Django code imports this module).
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """A ``DynamicLayer`` that keeps its keys and values in a buffer reserved for the whole generation.

        ``DynamicLayer`` appends every decoding step with ``torch.cat``, which copies the whole
        cache each step: profiling 16 prompts of ~600 tokens on CPU (prompt pass and 16 steps),
        that copying was 22 % of the op time, and without it llm_throughput's batches of 16 ran
        7 % faster (issue 6). Here a step writes its positions in place, and attention gets a
        view of the filled part, so it still attends over exactly the real length. Anything that
        replaces the tensors (beam reordering, ``batch_select_indices``) is adopted into a new
        buffer on the next update.
        """

        def __init__(self, capacity: int, batch_size: int):
            super().__init__()
            self.capacity = capacity
            self.batch_size = batch_size
            self._key_buffer = self._value_buffer = None

        def lazy_initialization(self, key_states, value_states) -> None:
            super().lazy_initialization(key_states, value_states)
            self._key_buffer = self._value_buffer = None

        def _adopt(self, like_keys, like_values, batch: int, length: int, needed: int) -> None:
            """New buffers for ``batch`` rows holding the first ``length`` positions of the current tensors."""
            import torch

            # Zeros, not empty: a prompt pass done in parts leaves pad columns unwritten, and a
            # masked column must still hold a finite number (0 * NaN is NaN in attention).
            room = max(self.capacity, needed)
            heads, device = like_keys.shape[1], like_keys.device
            keys = torch.zeros((batch, heads, room, like_keys.shape[-1]), dtype=like_keys.dtype, device=device)
            values = torch.zeros((batch, heads, room, like_values.shape[-1]), dtype=like_values.dtype, device=device)
            if length:
                keys[:, :, :length] = self.keys[:, :, :length]
                values[:, :, :length] = self.values[:, :, :length]
            self._key_buffer, self._value_buffer = keys, values

        def write(self, rows: slice, column: int, keys, values) -> None:
            """Write keys/values of some rows at ``column`` (a prompt pass done in parts)."""
            if not self.is_initialized:
                self.lazy_initialization(keys, values)
            if self._key_buffer is None:
                self._adopt(keys, values, self.batch_size, 0, column + keys.shape[-2])
            self._key_buffer[rows, :, column:column + keys.shape[-2]] = keys
            self._value_buffer[rows, :, column:column + values.shape[-2]] = values

        def set_length(self, length: int) -> None:
            self.keys = self._key_buffer[:, :, :length]
            self.values = self._value_buffer[:, :, :length]

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            length = self.keys.shape[-2] if self.keys.dim() == 4 else 0
            needed = length + key_states.shape[-2]
            buffer = self._key_buffer
            if (buffer is None or needed > buffer.shape[-2] or key_states.shape[0] != buffer.shape[0]
                    or (length and self.keys.data_ptr() != buffer.data_ptr())):
                # First update, or beam search / batch selection replaced the tensors: take the
                # rows as they are now into a new buffer.
                self._adopt(key_states, value_states, key_states.shape[0], length, needed)
            self._key_buffer[:, :, length:needed] = key_states
            self._value_buffer[:, :, length:needed] = value_states
            self.keys = self._key_buffer[:, :, :needed]
            self.values = self._value_buffer[:, :, :needed]
            return self.keys, self.values

    return ReservedLayer


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all sequences (0 for none)."""
    if not sequences:
        return 0
    n = min(len(s) for s in sequences)
    first = sequences[0]
    for i in range(n):
        token = first[i]
        if any(s[i] != token for s in sequences[1:]):
            return i
    return n


# Statuses a server answers when it is busy or briefly down: the request is tried again.
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
        from .scoring import OptionMass

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


def parse_openai_model_id(model_id: str) -> tuple[str, str] | None:
    """``openai:<model>@<base url>`` -> (model, base url); None for a local model id."""
    if not model_id.startswith("openai:"):
        return None
    model, sep, base_url = model_id.removeprefix("openai:").rpartition("@")
    if not sep or not model or not base_url.startswith(("http://", "https://")):
        raise LLMBackendError(
            f"{model_id!r} is not a server model id; write openai:<model>@<base url>, "
            "e.g. openai:Qwen/Qwen2.5-32B-Instruct@http://gpu1:8000/v1"
        )
    return model, base_url


def backend_for(model_id: str, *, quantization: str = "auto") -> Backend:
    """The backend for ``model_id``, created once per process (a model load is the slow part).

    ``openai:<model>@<url>[,<url>...]`` is a server (replicas round-robin). With
    ``$LLM_SERVER_URL`` set (one base URL or several, comma-separated), every other model id is
    served there too: augmentation, ICL and the judge all go to that server, which must serve
    that model (llama.cpp serves the one GGUF it was started with, whatever the name).
    """
    return _backend_for(model_id, quantization, os.environ.get("LLM_SERVER_URL", "").strip())


def served_model_id(model_id: str) -> str:
    """The model id ``backend_for(model_id)`` answers as: under ``$LLM_SERVER_URL`` a local name
    becomes ``openai:<name>@<url>``, so caches and stored results never mix a server's (e.g.
    4-bit) outputs with in-process ones."""
    server_url = os.environ.get("LLM_SERVER_URL", "").strip()
    if server_url and parse_openai_model_id(model_id) is None:
        return f"openai:{model_id}@{','.join(server_urls(server_url))}"
    return model_id


@functools.lru_cache(maxsize=4)
def _backend_for(model_id: str, quantization: str, server_url: str) -> Backend:
    server = parse_openai_model_id(model_id)
    if server is not None:
        return OpenAICompatibleBackend(*server)
    if server_url:
        return OpenAICompatibleBackend(model_id, server_url)
    return TransformersBackend(model_id, quantization=quantization)


backend_for.cache_clear = _backend_for.cache_clear  # type: ignore[attr-defined]
