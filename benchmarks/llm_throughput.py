"""Responses per second of the LLM layer, one prompt at a time vs batched (issue 6).

Renders generic-response augmentation prompts (section 3.1) for the first agent turns of the SPC
test file, generates them with the offline default model (SmolLM2-135M-Instruct, CPU float32,
greedy) through ``TransformersBackend`` one at a time and in batches of 8 and 16, and prints one
JSON line with each rate and the best batched rate over the one-at-a-time rate (target >= 4).

    .venv/bin/python benchmarks/llm_throughput.py [--prompts 64] [--single-prompts 64]
        [--max-new-tokens 64] [--threads N] [--model smollm2] [--quantization auto]

``--single-prompts`` times one-at-a-time generation on the first N prompts only (a rate, so it
compares with the batched ones), for machines where 64 unbatched generations take too long.

``--server URL`` (issue 19) also generates the same prompts over an OpenAI-compatible server
(e.g. ``python -m llama_cpp.server`` with the SmolLM2 GGUF: 4-bit Q4_1 weights) with
``--server-concurrency`` requests in flight, and reports its rate next to the in-process ones.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPC_TEST = ROOT.parent / "shared" / "data" / "spc" / "Synthetic-Persona-Chat_test.csv"


def spc_histories(path: Path, n: int) -> list[list[dict]]:
    """Histories H of the first ``n`` non-leading agent turns (Django-free, via the SPC parser)."""
    from modeling.importers import spc

    histories = []
    for conversation in spc.parse(path).conversations:
        turns = conversation.turns
        for index, turn in enumerate(turns):
            if turn.role == "agent" and index > 0 and turns[index - 1].role == "user":
                histories.append([{"role": t.role, "text": t.text} for t in turns[:index]])
                if len(histories) == n:
                    return histories
    return histories


def rate(backend, prompts, settings, batch_size: int) -> tuple[float, float]:
    started = time.perf_counter()
    outputs = backend.generate(prompts, settings=settings, batch_size=batch_size)
    elapsed = time.perf_counter() - started
    assert len(outputs) == len(prompts)
    return len(prompts) / elapsed, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--single-prompts", type=int, default=None, help="Default: all prompts.")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
    parser.add_argument("--data", default=str(SPC_TEST))
    parser.add_argument("--model", default="smollm2",
                        help="model id or folder (on a GPU host e.g. meta-llama/Llama-3.1-8B-Instruct)")
    parser.add_argument("--quantization", default="auto", choices=["auto", "4bit", "bf16", "none"],
                        help="auto: 4-bit NF4 on CUDA for models other than smollm2, float32 on CPU")
    parser.add_argument("--server", default=None, help="base URL of an OpenAI-compatible server (same prompts)")
    parser.add_argument("--server-concurrency", type=int, default=4, help="requests in flight to the server")
    parser.add_argument("--batches", default="8,16", help="in-process batch sizes to time (comma-separated)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from modeling.llm.backends import GenerationSettings, TransformersBackend
    from modeling.llm.prompts import augment_template

    if args.threads:
        torch.set_num_threads(args.threads)
    template = augment_template("spc")
    prompts = [template.messages(history=h) for h in spc_histories(Path(args.data), args.prompts)]
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    load_started = time.perf_counter()
    backend = TransformersBackend(args.model, quantization=args.quantization)
    load_seconds = time.perf_counter() - load_started
    backend.generate(prompts[:2], settings=GenerationSettings(max_new_tokens=4), batch_size=2)  # warm-up

    single = prompts[: args.single_prompts or len(prompts)]
    one_rps, one_s = rate(backend, single, settings, 1)
    result = {
        "benchmark": "llm_throughput", "model": args.model, "quantization": args.quantization,
        "device": str(backend.device),
        "threads": torch.get_num_threads(), "prompts": len(prompts), "single_prompts": len(single),
        "max_new_tokens": args.max_new_tokens, "load_s": round(load_seconds, 2),
        "one_at_a_time_rps": round(one_rps, 4), "one_at_a_time_s": round(one_s, 2),
    }
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    for batch_size in batches:
        rps, seconds = rate(backend, prompts, settings, batch_size)
        result[f"batch{batch_size}_rps"] = round(rps, 4)
        result[f"batch{batch_size}_s"] = round(seconds, 2)
    best = max(batches, key=lambda b: result[f"batch{b}_rps"])
    result["best_batch"] = best
    result["ratio"] = round(result[f"batch{best}_rps"] / one_rps, 2)
    result["target_ratio"] = 4.0
    if args.server:
        from modeling.llm.backends import OpenAICompatibleBackend

        server = OpenAICompatibleBackend(args.model, args.server, concurrency=args.server_concurrency)
        server.generate(prompts[:1], settings=GenerationSettings(max_new_tokens=4))  # warm-up
        before = server.usage()
        rps, seconds = rate(server, prompts, settings, args.server_concurrency)
        after = server.usage()
        result["server"] = {"base_url": server.base_url, "concurrency": args.server_concurrency,
                            "rps": round(rps, 4), "s": round(seconds, 2),
                            "completion_tokens": after["completion_tokens"] - before["completion_tokens"]}
        result["server_over_best_batch"] = round(rps / result[f"batch{best}_rps"], 2)
        result["server_over_one_at_a_time"] = round(rps / one_rps, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
