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
import os

from .base import (
    MIN_SHARED_PREFIX,
    Backend,
    BatchCallback,
    Completion,
    GenerationSettings,
    LLMBackendError,
    LLMRequestRefused,
    Messages,
    generation_cache_key,
    stop_token_ids,
    stopped_at_limit,
)
from .kv_cache import common_prefix_length, left_pad, reserved_cache
from .local import TransformersBackend
from .server import RETRY_STATUSES, OpenAICompatibleBackend, retry_delay, server_urls


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

__all__ = [
    "Backend",
    "BatchCallback",
    "Completion",
    "GenerationSettings",
    "LLMBackendError",
    "LLMRequestRefused",
    "MIN_SHARED_PREFIX",
    "Messages",
    "OpenAICompatibleBackend",
    "RETRY_STATUSES",
    "TransformersBackend",
    "backend_for",
    "common_prefix_length",
    "left_pad",
    "parse_openai_model_id",
    "generation_cache_key",
    "reserved_cache",
    "retry_delay",
    "served_model_id",
    "server_urls",
    "stop_token_ids",
    "stopped_at_limit",
]
