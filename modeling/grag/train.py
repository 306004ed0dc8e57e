"""Training loop (section 4.3.1): setup -> fit -> validate -> save_checkpoint.

AdamW, learning rate decaying linearly from lambda_0 to 50% of it by the last optimiser step,
gradient accumulation, bf16 autocast on CUDA, validation each epoch with the best model kept,
and a resumable checkpoint (weights, optimiser, scheduler, step, data position, RNG states) so
a killed run continues where it stopped and ends exactly as an uninterrupted one would.

Runs unchanged under ``torchrun`` / ``accelerate launch``: when WORLD_SIZE > 1 it joins the
process group, wraps the model in DDP, gives each rank every WORLD_SIZE-th sample of the
shuffled order, and only rank 0 writes files.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from modeling.progress import Cancelled, ProgressCallback, no_progress

from .backbone import resolve_device
from .config import GRAGConfig
from .inputs import DialogueSample, InputBuilder
from .model import GRAGModel, build_model, save_model
from .modules import decoder_layers

LAST, BEST = "last", "best"


def get_lr(step: int, total_steps: int, lr: float, end_fraction: float = 0.5) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear from lr to end_fraction * lr at the last step."""
    if total_steps <= 1:
        return lr
    return lr * (1.0 - (1.0 - end_fraction) * min(step, total_steps - 1) / (total_steps - 1))


def steps_per_epoch(n_samples: int, batch_size: int, grad_accum: int, world_size: int = 1) -> int:
    micro = math.ceil(math.ceil(n_samples / world_size) / batch_size)
    return math.ceil(micro / grad_accum)


def epoch_order(n: int, *, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of one epoch; its own generator, so resuming reproduces it."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


@dataclass
class TrainState:
    config: GRAGConfig
    model: GRAGModel
    tokenizer: object
    builder: InputBuilder
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    total_steps: int
    device: torch.device
    step: int = 0  # optimiser steps done
    epoch: int = 0
    micro: int = 0  # micro-batches of the current epoch already consumed
    best_valid: float = math.inf
    log: list[dict] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1
    ddp_model: torch.nn.Module | None = None

    @property
    def trainer(self) -> torch.nn.Module:
        return self.ddp_model or self.model


def freeze_lower_layers(model: GRAGModel, n: int) -> None:
    """Leave only the top ``n`` decoder layers, the decoder's final norm and the non-backbone layers trainable."""
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    decoder = model.backbone.get_decoder()
    trainable = list(decoder_layers(model.backbone)[-n:])
    trainable += [getattr(decoder, name) for name in ("norm", "ln_f", "final_layer_norm", "layer_norm", "layernorm_embedding")
                  if isinstance(getattr(decoder, name, None), torch.nn.Module)][:1]
    for module in trainable:
        for p in module.parameters():
            p.requires_grad_(True)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1


def setup(config: GRAGConfig, n_train: int, *, model: GRAGModel | None = None, tokenizer=None) -> TrainState:
    """Seed everything, build (or take) the model, and make the optimiser and schedule."""
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    rank, world = _distributed()
    device = resolve_device(config.device)
    if model is None:
        model, tokenizer = build_model(config)
    model.to(device)
    if config.train_top_layers:
        freeze_lower_layers(model, config.train_top_layers)
    builder = InputBuilder(tokenizer, config, is_encoder_decoder=model.is_encoder_decoder)
    total = config.epochs * steps_per_epoch(n_train, config.batch_size, config.grad_accum, world)
    if config.max_steps:
        total = min(total, config.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: get_lr(s, total, 1.0, config.lr_end_fraction)
    )
    ddp_model = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # Unused parameters: SE_G when alpha = 0, the encoder's last layer for some segments.
        ddp_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    return TrainState(
        config=config, model=model, tokenizer=tokenizer, builder=builder, optimizer=optimizer, scheduler=scheduler,
        total_steps=total, device=device, rank=rank, world_size=world, ddp_model=ddp_model,
    )


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def _autocast(state: TrainState):
    enabled = state.device.type == "cuda" and state.config.bf16
    return torch.autocast(device_type=state.device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def estimate_loss(state: TrainState, samples: list[DialogueSample]) -> dict[str, float]:
    """Mean loss terms over ``samples`` (dropout off), weighted by batch size."""
    if not samples:
        return {}
    state.model.eval()
    totals: dict[str, float] = {}
    count = 0
    limit = state.config.max_valid_batches
    for i, batch in enumerate(state.builder.batches(samples, state.config.batch_size)):
        if limit is not None and i >= limit:
            break
        with _autocast(state):
            out = state.model(_to(batch, state.device))
        n = batch["n_chars"].numel()
        for k in ("loss", "l_p", "l_g", "l_cjepa"):
            if k in out:
                totals[k] = totals.get(k, 0.0) + float(out[k]) * n
        count += n
    state.model.train()
    return {k: v / count for k, v in totals.items()}


def validate(state: TrainState, valid: list[DialogueSample], output_dir: Path, log: Callable[[str], None]) -> dict:
    """Validation loss; keep the model as ``best`` when its L_P (the response's NWP loss) improves."""
    metrics = estimate_loss(state, valid)
    entry = {"validation": True, "step": state.step, "epoch": state.epoch, **{f"valid_{k}": v for k, v in metrics.items()}}
    score = metrics.get("l_p", math.inf) if valid else -state.step  # no validation set: keep the latest
    if score < state.best_valid:
        state.best_valid = score
        entry["best"] = True
        if state.rank == 0:
            tmp = output_dir / (BEST + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            save_model(state.model, state.tokenizer, tmp)
            shutil.rmtree(output_dir / BEST, ignore_errors=True)
            tmp.rename(output_dir / BEST)
    state.log.append(entry)
    log(json.dumps(entry))
    return entry


def _rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: TrainState, output_dir: Path) -> Path | None:
    """Everything a resumed run needs, written atomically (a kill mid-write keeps the old one)."""
    if state.rank != 0:
        return None
    path = output_dir / LAST
    tmp = output_dir / (LAST + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trainable = {n for n, p in state.model.named_parameters() if p.requires_grad}
    torch.save({k: v for k, v in state.model.state_dict().items() if k in trainable or not state.config.qlora}, tmp / "model.pt")
    torch.save(
        {"optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict(), "rng": _rng_state()},
        tmp / "optimizer.pt",
    )
    (tmp / "state.json").write_text(json.dumps({
        "step": state.step, "epoch": state.epoch, "micro": state.micro, "best_valid": state.best_valid,
        "total_steps": state.total_steps, "log": state.log, "config": state.config.to_dict(),
    }))
    # Swap by renames only, never delete-then-rename: a kill between the two steps leaves a complete
    # checkpoint at last.old or last.tmp, and load_checkpoint finds it (a worker killed mid-save once
    # restarted from scratch this way).
    old = output_dir / (LAST + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def _checkpoint_dir(output_dir: Path) -> Path | None:
    """The newest complete checkpoint: ``last``, else one a kill left mid-swap (``state.json`` is written last)."""
    for name in (LAST, LAST + ".tmp", LAST + ".old"):
        if (output_dir / name / "state.json").exists():
            return output_dir / name
    return None


def load_checkpoint(state: TrainState, output_dir: Path) -> bool:
    """Restore a run from ``output_dir/last`` (or the checkpoint a kill left mid-swap); False when there is none."""
    path = _checkpoint_dir(output_dir)
    if path is None:
        return False
    meta = json.loads((path / "state.json").read_text())
    state.model.load_state_dict(torch.load(path / "model.pt", map_location=state.device), strict=not state.config.qlora)
    extra = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    state.optimizer.load_state_dict(extra["optimizer"])
    state.scheduler.load_state_dict(extra["scheduler"])
    _set_rng_state(extra["rng"])
    state.step, state.epoch, state.micro = meta["step"], meta["epoch"], meta["micro"]
    state.best_valid, state.log = meta["best_valid"], meta["log"]
    return True


def _optimizer_step(state: TrainState) -> float:
    if state.config.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), state.config.max_grad_norm)
    lr = state.optimizer.param_groups[0]["lr"]
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    return lr


def fit(
    state: TrainState,
    train: list[DialogueSample],
    valid: list[DialogueSample],
    output_dir: Path,
    *,
    progress: ProgressCallback = no_progress,
    log: Callable[[str], None] = lambda line: None,
) -> dict:
    """Train until the last step; validate each epoch; checkpoint every N steps and on cancel."""
    c = state.config
    state.model.train()
    log_file = open(output_dir / "train_log.jsonl", "a") if state.rank == 0 else None
    started = time.monotonic()
    try:
        while state.step < state.total_steps and state.epoch < c.epochs:
            order = epoch_order(len(train), seed=c.seed, epoch=state.epoch)[state.rank :: state.world_size]
            micro_batches = [order[i : i + c.batch_size] for i in range(0, len(order), c.batch_size)]
            if state.world_size > 1:  # every rank must take the same number of steps
                micro_batches = micro_batches[: len(order) // c.batch_size or 1]
            accum: dict[str, float] = {}
            while state.micro < len(micro_batches) and state.step < state.total_steps:
                index = micro_batches[state.micro]
                batch = _to(state.builder.collate([state.builder.features(train[i]) for i in index]), state.device)
                with _autocast(state):
                    out = state.trainer(batch)
                (out["loss"] / c.grad_accum).backward()
                for k in ("loss", "l_p", "l_g", "l_cjepa"):
                    if k in out:
                        accum[k] = accum.get(k, 0.0) + out[k].item() / c.grad_accum
                state.micro += 1
                end_of_epoch = state.micro == len(micro_batches)
                if state.micro % c.grad_accum and not end_of_epoch:
                    continue
                lr = _optimizer_step(state)
                entry = {"step": state.step, "epoch": state.epoch, "lr": lr, **accum}
                accum = {}
                state.log.append(entry)
                if log_file:
                    log_file.write(json.dumps(entry) + "\n")
                    log_file.flush()
                log(json.dumps(entry))
                if c.checkpoint_every and state.step % c.checkpoint_every == 0:
                    save_checkpoint(state, output_dir)
                try:
                    progress(state.step, state.total_steps)
                except Cancelled:
                    save_checkpoint(state, output_dir)
                    raise
            if state.micro >= len(micro_batches):
                validate(state, valid, output_dir, log)
                state.epoch += 1
                state.micro = 0
                save_checkpoint(state, output_dir)
        if not (state.log and state.log[-1].get("validation") and state.log[-1]["step"] == state.step):
            validate(state, valid, output_dir, log)  # stopped mid-epoch by max_steps
            save_checkpoint(state, output_dir)
    finally:
        if log_file:
            log_file.close()
    train_entries = [e for e in state.log if "lr" in e]
    return {
        "steps": state.step, "total_steps": state.total_steps, "epochs_done": state.epoch,
        "best_valid_l_p": None if math.isinf(state.best_valid) or state.best_valid < 0 else state.best_valid,
        "last_train": train_entries[-1] if train_entries else None,
        "seconds": round(time.monotonic() - started, 2),
        "best_dir": str(output_dir / BEST), "checkpoint_dir": str(output_dir / LAST),
    }


def train(
    config: GRAGConfig,
    train_samples: list[DialogueSample],
    valid_samples: list[DialogueSample],
    output_dir: str | Path,
    *,
    progress: ProgressCallback = no_progress,
    log: Callable[[str], None] = lambda line: None,
    model: GRAGModel | None = None,
    tokenizer=None,
    resume: bool = True,
) -> dict:
    """setup -> (resume) -> fit. Returns a summary; the best model is in ``output_dir/best``."""
    if not train_samples:
        raise ValueError("No training samples: import a dataset split with at least one sample.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state = setup(config, len(train_samples), model=model, tokenizer=tokenizer)
    resumed = resume and load_checkpoint(state, output_dir)
    if resumed:
        log(json.dumps({"resumed_at_step": state.step, "epoch": state.epoch}))
    summary = fit(state, train_samples, valid_samples, output_dir, progress=progress, log=log)
    summary["resumed"] = bool(resumed)
    return summary
