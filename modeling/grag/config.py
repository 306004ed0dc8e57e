"""Settings of one GRAG training run (paper sections 3 and 4.3), as a plain dataclass.

Every field is JSON-serialisable so that a System row, a checkpoint folder and a sweep job all
carry the same record; ``GRAGConfig.from_dict`` ignores keys it does not know (forms and the
pipeline pass extra ones such as ``dataset`` or ``limit``).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

METHODS = ("presft_hist", "presft_tst", "pregrag", "postgrag")
DECODINGS = ("greedy", "beam", "sample")


def _launch(label: str, help_text: str, minimum: float | None) -> dict:
    """Field metadata of a setting that launch forms, commands and job pages expose: its label (words a
    reader knows, with the paper's symbol), help and lowest value."""
    return {"launch": True, "label": label, "help": help_text, "min": minimum}


@dataclass
class GRAGConfig:
    # Which model to train (section 4.2.2 / 3.2 / 3.3): presft_hist reads [P;H], presft_tst [P;R_G],
    # pregrag [P;H;R_G] with C-JEPA, postgrag encodes P, H, R_G separately with style vectors.
    method: str = "postgrag"
    # Model id or folder resolved by modeling.llm.loading.resolve_model (e.g. facebook/bart-base,
    # smollm2), or "tiny:bart" / "tiny:t5" / "tiny:llama" / "tiny:gpt2" for a few-layer random model.
    backbone: str = "smollm2"
    # Tokenizer to use with a "tiny:" backbone (real backbones use their own).
    tokenizer: str = "smollm2"
    # Weight of the style-removal loss L_G (Eq. 3); PostGRAG only. 0 skips SE_G and the second decode.
    alpha: float = field(default=0.5, metadata=_launch("Style-removal weight α", "Weight alpha of style removal L_G (Eq. 3; PostGRAG only).", 0))
    # Weight of the C-JEPA loss (Eq. 1-3); PreGRAG and PostGRAG. 0 skips encoding R_P / R_G for it.
    beta: float = field(default=1e-2, metadata=_launch("C-JEPA weight β", "Weight beta of the C-JEPA loss (Eq. 1-3; PreGRAG and PostGRAG).", 0))
    # Initial learning rate lambda_0 of AdamW; decays linearly to lr_end_fraction * lr by the last step.
    lr: float = field(default=1e-4, metadata=_launch("Learning rate", "Initial AdamW learning rate; decays linearly to lr_end_fraction of it by the last step.", 0))
    lr_end_fraction: float = 0.5
    weight_decay: float = 0.0
    # Paper: 20 epochs. max_steps (optimiser steps) caps a run for demos and benchmarks.
    epochs: int = field(default=20, metadata=_launch("Epochs", "Passes over the training split (paper: 20).", 1))
    max_steps: int | None = field(default=None, metadata=_launch("Maximum optimiser steps", "Stop after this many optimiser steps.", 1))
    # Samples per micro-batch and micro-batches per optimiser step.
    batch_size: int = field(default=8, metadata=_launch("Batch size", "Samples per micro-batch.", 1))
    grad_accum: int = field(default=1, metadata=_launch("Gradient accumulation", "Micro-batches per optimiser step.", 1))
    # Train only the top N decoder layers (and the decoder's final norm and the style
    # extractors); None trains everything. For CPU runs: frozen lower layers need no backward.
    train_top_layers: int | None = None
    # Gradient-norm clipping (0 disables).
    max_grad_norm: float = 1.0
    # Token budgets. The context ([P;H], [P;R_G] or [P;H;R_G]) keeps the persona (up to
    # max_persona_len) and R_G (up to max_generic_len) and fills the rest with the latest turns.
    max_source_len: int = 384
    max_persona_len: int = 128
    max_history_len: int = 256
    max_generic_len: int = 96
    max_target_len: int = 96
    # Seed for weights of new layers, data order and dropout: a CPU run with one seed repeats exactly.
    seed: int = field(default=0, metadata=_launch("Seed", "Seed of new layers, data order and dropout.", None))
    # "auto" picks cuda when available, else cpu.
    device: str = "auto"
    # bf16 autocast for the forward pass on CUDA (ignored on CPU).
    bf16: bool = True
    # QLoRA (4-bit NF4 base + LoRA adapters via peft/bitsandbytes) for decoder-only backbones on CUDA.
    qlora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # Heads of the style extractors' attention (SE_P, SE_G, section 3.3.1); must divide the width.
    style_heads: int = 4
    # Start the style extractors' output projection at zero, so S_P = 0 at step 0 and the
    # pretrained decoder is undisturbed until the extractor has learnt something (h_i <- S_P + h_i).
    style_zero_init: bool = True
    # Save a resumable checkpoint every N optimiser steps (and at each epoch end and on cancel).
    checkpoint_every: int = 50
    # Validation batches per epoch (None: the whole validation set).
    max_valid_batches: int | None = None
    # Generation defaults (section 3.5: auto-regressive sampling from the NWP logits).
    decoding: str = "greedy"
    num_beams: int = 4
    top_p: float = 0.9
    temperature: float = 1.0
    max_new_tokens: int = 48
    generation_batch_size: int = 16

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.decoding not in DECODINGS:
            raise ValueError(f"Unknown decoding {self.decoding!r}; choose one of {', '.join(DECODINGS)}.")
        for name in ("alpha", "beta", "lr"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.batch_size < 1 or self.grad_accum < 1 or self.epochs < 1:
            raise ValueError("batch_size, grad_accum and epochs must be >= 1.")

    @property
    def uses_generic(self) -> bool:
        """Whether the method reads R_G at inference (all but PreSFT(Hist))."""
        return self.method != "presft_hist"

    @property
    def effective_alpha(self) -> float:
        # L_G exists only in PostGRAG (section 3.5: not applied to PreGRAG).
        return self.alpha if self.method == "postgrag" else 0.0

    @property
    def effective_beta(self) -> float:
        return self.beta if self.method in ("pregrag", "postgrag") else 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GRAGConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names and v is not None})

    def replace(self, **changes) -> GRAGConfig:
        return dataclasses.replace(self, **changes)


def launch_fields() -> list[dataclasses.Field]:
    """The GRAGConfig fields that launch forms, the pipeline and ``manage.py train`` expose, in order.

    Each carries ``metadata["help"]`` and ``metadata["min"]``; its default is the field's default, so a
    form, a command and a job read one definition (docs/training.md).
    """
    return [f for f in dataclasses.fields(GRAGConfig) if f.metadata.get("launch")]


def methods_with(param: str) -> tuple[str, ...]:
    """The methods whose training reads ``param``, by ``effective_alpha`` / ``effective_beta``:
    alpha only PostGRAG (L_G, Eq. 3), beta PreGRAG and PostGRAG (C-JEPA), any other setting all."""
    if param in ("alpha", "beta"):
        return tuple(m for m in METHODS if getattr(GRAGConfig(method=m, **{param: 1.0}), f"effective_{param}"))
    return METHODS


LAUNCH_KEYS = tuple(f.name for f in launch_fields())
DEFAULTS = GRAGConfig()


# Section 4.3.1's search space.
SWEEP_ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))
SWEEP_BETAS = (0.0, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 5e-1, 1.0, 5.0, 10.0)
SWEEP_LRS = (1e-3, 1e-4, 1e-5)


def sweep_configs(
    base: GRAGConfig,
    *,
    alphas: tuple[float, ...] | list[float] | None = None,
    betas: tuple[float, ...] | list[float] | None = None,
    lrs: tuple[float, ...] | list[float] | None = None,
) -> list[GRAGConfig]:
    """One config per grid point (each becomes its own training job).

    None takes the paper's full range for that axis; pass a list to search a subset. Axes a
    method does not use collapse (PreGRAG ignores alpha, PreSFT both), so no run is repeated.
    """
    alphas = list(SWEEP_ALPHAS if alphas is None else alphas)
    betas = list(SWEEP_BETAS if betas is None else betas)
    lrs = list(SWEEP_LRS if lrs is None else lrs)
    if base.method != "postgrag":
        alphas = [base.alpha]
    if base.method not in ("pregrag", "postgrag"):
        betas = [base.beta]
    return [base.replace(alpha=a, beta=b, lr=lr) for lr, a, b in itertools.product(lrs, alphas, betas)]
