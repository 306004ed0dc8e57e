"""Django-facing services for GRAG training and generation (the ML core is modeling.grag).

A System row names the run: its method, backbone and ``config`` (GRAGConfig fields plus
``split``, ``limit``, ``valid_split``, ``valid_limit``); its model lives under
``ARTIFACTS_DIR/systems/<system name>-<id>/`` (``last/`` resumable checkpoint, ``best/`` model), so a
rerun of the same job resumes instead of starting over.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from modeling.progress import Cancelled, ProgressCallback, no_progress

from . import metrics
from .grag.config import GRAGConfig
from .grag.inputs import DialogueSample
from .models import Dataset, Response, Sample, System
from .text import degenerate_flags, flag_counts

RUN_KEYS = ("split", "limit", "valid_split", "valid_limit")


def sample_to_dialogue(sample: Sample) -> DialogueSample:
    return DialogueSample(
        history=[{"role": t["role"], "text": t["text"]} for t in sample.history],
        reference=sample.reference, generic_response=sample.generic_response,
        agent_persona=sample.agent_persona, user_persona=sample.user_persona, key=sample.key,
    )


def system_run_dir(*, system: System) -> Path:
    # The id keeps a recreated system of the same name from resuming an old run's checkpoint.
    return Path(settings.ARTIFACTS_DIR) / "systems" / f"{slugify(system.name) or 'system'}-{system.pk}"


def system_config(*, system: System) -> GRAGConfig:
    data = {**system.config, "method": system.method}
    if system.backbone:
        data["backbone"] = system.backbone
    return GRAGConfig.from_dict(data)


VALID_LIMIT_DEFAULT = 200  # validation samples a training run scores L_P on when its config names none


def dataset_valid_split(*, dataset: Dataset, train_split: str) -> str:
    """The split a training run on ``train_split`` validates on when its config names none: the
    dataset's first of "valid", "validation", "dev" that has samples and is not the training split;
    "" when there is none (the run then validates on nothing)."""
    return next((s for s in ("valid", "validation", "dev") if s != train_split and
                 Sample.objects.filter(dataset=dataset, split=s).exists()), "")


def _samples(*, dataset: Dataset, split: str, limit: int | None) -> list[Sample]:
    qs = Sample.objects.filter(dataset=dataset, split=split).order_by("id")
    return list(qs[:limit] if limit else qs)


def _check_generic(samples: list[Sample], config: GRAGConfig, where: str) -> None:
    if not config.uses_generic:
        return
    missing = [s.key for s in samples if not s.generic_response.strip()]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(samples)} samples of {where} have no generic response R_G "
            f"(first: {missing[0]}); {config.method} needs it. Run generic-response augmentation first."
        )


def system_create(
    *, name: str, dataset: Dataset, method: str, backbone: str, config: dict | None = None
) -> System:
    """Create (or fetch, for a retried job) the System a training run fills in."""
    GRAGConfig.from_dict({**(config or {}), "method": method})  # fail now on a bad setting
    system, _ = System.objects.get_or_create(
        name=name, defaults={"dataset": dataset, "method": method, "backbone": backbone, "config": config or {}},
    )
    return system


def train_system(
    *, system: System, progress: ProgressCallback = no_progress, log: Callable[[str], None] = lambda line: None
) -> dict:
    """Train the system's model on its dataset split; resume from its checkpoint if one exists."""
    # lazy: imports torch and transformers, which only a training worker needs
    from .grag.train import train

    if system.dataset is None:
        raise ValueError(f"System {system.name!r} has no dataset to train on.")
    config = system_config(system=system)
    split = system.config.get("split", "train")
    train_rows = _samples(dataset=system.dataset, split=split, limit=system.config.get("limit"))
    if not train_rows:
        raise ValueError(f"Dataset {system.dataset.name!r} has no samples in split {split!r}; import it first.")
    _check_generic(train_rows, config, f"{system.dataset.name}/{split}")
    valid_split = system.config.get("valid_split")
    if valid_split is None:
        valid_split = dataset_valid_split(dataset=system.dataset, train_split=split)
    valid_limit = system.config.get("valid_limit", VALID_LIMIT_DEFAULT)
    valid_rows = _samples(dataset=system.dataset, split=valid_split, limit=valid_limit) if valid_split else []
    _check_generic(valid_rows, config, f"{system.dataset.name}/{valid_split}")
    run_dir = system_run_dir(system=system)
    System.objects.filter(pk=system.pk).update(status=System.Status.TRAINING)
    try:
        summary = train(
            config, [sample_to_dialogue(s) for s in train_rows], [sample_to_dialogue(s) for s in valid_rows],
            run_dir, progress=progress, log=log,
        )
    except Cancelled:
        System.objects.filter(pk=system.pk).update(status=System.Status.NEW)
        raise
    except Exception:
        System.objects.filter(pk=system.pk).update(status=System.Status.FAILED)
        raise
    system.refresh_from_db()
    system.checkpoint_dir = summary["best_dir"]
    system.status = System.Status.TRAINED
    system.config = {**system.config, "training": {
        "steps": summary["steps"], "best_valid_l_p": summary["best_valid_l_p"], "train_samples": len(train_rows),
        "valid_split": valid_split, "valid_samples": len(valid_rows), "last_train": summary["last_train"],
    }}
    system.save(update_fields=["checkpoint_dir", "status", "config"])
    return {"system": system.name, "samples": len(train_rows), "valid_samples": len(valid_rows), **summary}


def system_generate(
    *,
    system: System,
    split: str = "test",
    limit: int | None = None,
    decoding: str | None = None,
    progress: ProgressCallback = no_progress,
) -> dict:
    """Generate the system's responses for a split and store them, with the reference's NLL for BPC.

    Samples that already have a response of this system are skipped (a retried job resumes);
    each batch is written in one transaction. Each response's meta["degenerate"] holds its
    degenerate-output flags (loop, cut mid-sentence, max_new_tokens hit, empty; the text is kept
    as generated) and the summary's "degenerate" counts them over the split's responses.
    """
    # lazy: imports torch and transformers, which only a generating worker needs
    from .grag.generate import generate_responses, score_reference
    from .grag.model import load_model

    if not system.checkpoint_dir or not Path(system.checkpoint_dir).exists():
        raise ValueError(f"System {system.name!r} has no trained model (checkpoint_dir={system.checkpoint_dir!r}); train it first.")
    if system.dataset is None:
        raise ValueError(f"System {system.name!r} has no dataset.")
    rows = _samples(dataset=system.dataset, split=split, limit=limit)
    if not rows:
        raise ValueError(f"Dataset {system.dataset.name!r} has no samples in split {split!r}.")
    done = set(Response.objects.filter(system=system, sample__in=rows).values_list("sample_id", flat=True))
    todo = [s for s in rows if s.pk not in done]
    model, tokenizer = load_model(system.checkpoint_dir)
    _check_generic(todo, model.config, f"{system.dataset.name}/{split}")
    decoding = decoding or model.config.decoding
    batch_size = model.config.generation_batch_size
    created = 0
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        dialogues = [sample_to_dialogue(s) for s in chunk]
        texts = generate_responses(model, tokenizer, dialogues, decoding=decoding, batch_size=batch_size)
        scores = score_reference(model, tokenizer, dialogues, batch_size=batch_size)
        with transaction.atomic():
            Response.objects.bulk_create([
                Response(system=system, sample=s, text=str(text), meta={
                    "nll_nats": sc["nll_nats"], "ref_chars": sc["n_chars"], "n_tokens": sc["n_tokens"],
                    "bpc": metrics.bpc(sc["nll_nats"], sc["n_chars"]) if sc["n_chars"] else None,
                    "decoding": decoding,
                    "degenerate": degenerate_flags(text, hit_limit=getattr(text, "hit_limit", None)),
                })
                for s, text, sc in zip(chunk, texts, scores)
            ], ignore_conflicts=True)
        created += len(chunk)
        progress(len(done) + created, len(rows))
    settings_used = {"decoding": decoding, "max_new_tokens": model.config.max_new_tokens, "num_beams": model.config.num_beams,
                     "top_p": model.config.top_p, "temperature": model.config.temperature, "split": split}
    System.objects.filter(pk=system.pk).update(status=System.Status.GENERATED, generation=settings_used)
    flags = flag_counts(meta.get("degenerate") for meta in
                        Response.objects.filter(system=system, sample__in=rows).values_list("meta", flat=True))
    return {"system": system.name, "split": split, "created": created, "existing": len(done), "responses": len(rows),
            "degenerate": flags}
