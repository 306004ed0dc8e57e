"""Command line without Django: ``python -m modeling.grag train|generate|sweep`` on JSONL files.

Each JSONL line is one sample: {"history": [{"role": "user"|"agent", "text": ...}, ...],
"reference": R_P, "generic_response": R_G, "agent_persona": ..., "user_persona": ..., "key": ...}.
Every command prints one JSON line of results; bad input exits non-zero with file and line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from modeling.llm.loading import ModelNotFound

from .config import GRAGConfig, sweep_configs
from .inputs import DialogueSample


class InputError(ValueError):
    """Bad user input (a file, a line, an option); the message says what and where."""


def read_jsonl(path: str | Path, *, need_reference: bool = True, need_generic: bool = False) -> list[DialogueSample]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    samples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg})") from exc
            try:
                sample = DialogueSample.from_dict(data, where=where)
            except ValueError as exc:
                raise InputError(str(exc)) from exc
            if need_reference and not sample.reference.strip():
                raise InputError(f"{where}: 'reference' (R_P) is missing or empty")
            if need_generic and not sample.generic_response.strip():
                raise InputError(f"{where}: 'generic_response' (R_G) is missing or empty; this method needs it")
            samples.append(sample)
    if not samples:
        raise InputError(f"{path}: no samples")
    return samples


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(GRAGConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool",):
            parser.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=None)
        elif f.type in ("int", "int | None"):
            parser.add_argument(flag, type=int, default=None)
        elif f.type in ("float",):
            parser.add_argument(flag, type=float, default=None)
        else:
            parser.add_argument(flag, default=None)


def _config(args) -> GRAGConfig:
    base = json.loads(Path(args.config).read_text()) if getattr(args, "config", None) else {}
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(GRAGConfig) if getattr(args, f.name, None) is not None}
    try:
        return GRAGConfig.from_dict({**base, **overrides})
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from exc


def cmd_train(args) -> dict:
    # lazy: imports torch and transformers; `python -m modeling.grag --help` stays instant
    from .train import train

    config = _config(args)
    train_samples = read_jsonl(args.train, need_generic=config.uses_generic)
    valid = read_jsonl(args.valid, need_generic=config.uses_generic) if args.valid else []
    log = (lambda line: print(line, file=sys.stderr)) if args.verbose else (lambda line: None)
    summary = train(config, train_samples, valid, args.out, log=log, resume=not args.restart)
    return {"command": "train", "method": config.method, "backbone": config.backbone, **summary}


def cmd_generate(args) -> dict:
    # lazy: imports torch and transformers; `python -m modeling.grag --help` stays instant
    from .generate import generate_responses, score_reference
    from .model import load_model

    model, tokenizer = load_model(args.model, device=args.device)
    samples = read_jsonl(args.input, need_reference=args.score, need_generic=model.config.uses_generic)
    texts = generate_responses(model, tokenizer, samples, decoding=args.decoding, batch_size=args.batch_size, seed=args.seed)
    scores = score_reference(model, tokenizer, samples) if args.score else [None] * len(samples)
    with open(args.output, "w", encoding="utf-8") as out:
        for sample, text, score in zip(samples, texts, scores):
            out.write(json.dumps({"key": sample.key, "response": text, **({"score": score} if score else {})}) + "\n")
    result = {"command": "generate", "samples": len(samples), "output": str(args.output), "decoding": args.decoding or model.config.decoding}
    if args.score:
        chars = sum(s["n_chars"] for s in scores)
        result["bpc"] = sum(s["nll_nats"] for s in scores) / 0.6931471805599453 / chars if chars else None
    return result


def cmd_sweep(args) -> dict:
    config = _config(args)
    parse = lambda text: [float(x) for x in text.split(",")] if text else None  # noqa: E731
    configs = sweep_configs(config, alphas=parse(args.alphas), betas=parse(args.betas), lrs=parse(args.lrs))
    if args.output:
        with open(args.output, "w") as out:
            for c in configs:
                out.write(json.dumps(c.to_dict()) + "\n")
    return {"command": "sweep", "runs": len(configs), "output": args.output}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modeling.grag", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train one method on a JSONL file; resumes from OUT/last")
    p.add_argument("--train", required=True)
    p.add_argument("--valid")
    p.add_argument("--out", required=True, help="run folder: OUT/best (model), OUT/last (checkpoint)")
    p.add_argument("--config", help="JSON file of GRAGConfig fields (options override it)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--verbose", action="store_true", help="log loss components to stderr")
    _add_config_options(p)
    p.set_defaults(func=cmd_train)
    g = sub.add_parser("generate", help="generate responses with a trained model folder")
    g.add_argument("--model", required=True, help="a folder written by train (OUT/best)")
    g.add_argument("--input", required=True)
    g.add_argument("--output", required=True)
    g.add_argument("--decoding", choices=["greedy", "beam", "sample"])
    g.add_argument("--batch-size", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--device")
    g.add_argument("--score", action="store_true", help="also score the references (NLL, bits per character)")
    g.set_defaults(func=cmd_generate)
    s = sub.add_parser("sweep", help="write the configs of a hyper-parameter grid (section 4.3.1), one JSON per line")
    s.add_argument("--alphas")
    s.add_argument("--betas")
    s.add_argument("--lrs")
    s.add_argument("--output")
    s.add_argument("--config")
    _add_config_options(s)
    s.set_defaults(func=cmd_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except (InputError, ModelNotFound, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank returns; one line is enough
        print(json.dumps(result))
    return 0
