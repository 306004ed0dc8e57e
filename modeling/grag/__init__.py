"""GRAG methods and baselines (paper sections 3-4) in plain PyTorch + transformers, no Django.

Public names are re-exported here lazily (PEP 562), so that reading ``modeling.grag.config`` (launch
forms in the web process) does not import torch; see docs/training.md.
"""
import importlib

_EXPORTS = {
    "GRAGConfig": ".config", "sweep_configs": ".config",
    "TAG_TOKENS": ".inputs", "DialogueSample": ".inputs", "InputBuilder": ".inputs", "add_tag_tokens": ".inputs",
    "cjepa_loss": ".losses", "last_token": ".losses",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
