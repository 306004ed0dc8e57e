"""GRAG methods and baselines (paper sections 3-4) in plain PyTorch + transformers, no Django.

Public names are re-exported here; see docs/training.md.
"""
from .config import GRAGConfig, sweep_configs
from .inputs import TAG_TOKENS, DialogueSample, InputBuilder, add_tag_tokens
from .losses import cjepa_loss, last_token

__all__ = [
    "GRAGConfig", "sweep_configs", "TAG_TOKENS", "DialogueSample", "InputBuilder", "add_tag_tokens",
    "cjepa_loss", "last_token",
]
