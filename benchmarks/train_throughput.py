"""One training step of PreSFT(Hist), PreGRAG and PostGRAG on the same backbone and batch.

Reports, per method, the median step time (forward + backward + AdamW step), samples per second
and peak memory of the step (CUDA: max allocated; CPU: peak RSS above the level before the
step, sampled every 2 ms), PostGRAG's step time over PreSFT(Hist)'s (target <= 2.0, alpha and
beta both non-zero), and where PostGRAG's step goes (encoder calls, decoder call, the rest of
the forward, backward, optimiser). Samples are real SPC validation turns; R_G is a timing
stand-in of realistic length (the reference text itself: SPC ships no generic responses, and
only lengths matter for timing). Prints one JSON line.

    .venv/bin/python benchmarks/train_throughput.py                      # SmolLM2-135M, CPU
    .venv/bin/python benchmarks/train_throughput.py --backbone bart-base-arch   # BART-base shape, random weights (GPU)
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPC_VALID = ROOT.parent / "shared" / "data" / "spc" / "Synthetic-Persona-Chat_valid.csv"


class PeakRSS:
    """Peak resident memory above the level at entry, sampled in a thread (CPU runs)."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self):
        self.base = self.peak = self._rss()
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self._rss())


def load(backbone: str, device):
    import torch

    from modeling.llm.loading import load_tokenizer

    tokenizer = copy.deepcopy(load_tokenizer("smollm2"))
    if backbone == "smollm2":
        from transformers import AutoModelForCausalLM

        from modeling.llm.loading import resolve_model

        source = resolve_model("smollm2")
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, **source.from_pretrained_kwargs())
        return model.to(device), tokenizer, "SmolLM2-135M-Instruct (real weights, float32)"
    if backbone == "bart-base-arch":
        from transformers import BartConfig, BartForConditionalGeneration

        # facebook/bart-base's shape; the SmolLM2 tokenizer stands in for BART's (offline).
        cfg = BartConfig(vocab_size=len(tokenizer) + 8, d_model=768, encoder_layers=6, decoder_layers=6,
                         encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072,
                         decoder_ffn_dim=3072, max_position_embeddings=1024, pad_token_id=0,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=1, decoder_start_token_id=tokenizer.eos_token_id)
        tokenizer.pad_token = "<|endoftext|>"
        return BartForConditionalGeneration(cfg).to(device), tokenizer, "BART-base architecture (random weights)"
    raise SystemExit(f"unknown --backbone {backbone!r}: smollm2 or bart-base-arch")


def main() -> None:
    import torch

    from modeling.grag.config import GRAGConfig
    from modeling.grag.data import samples_from_file
    from modeling.grag.inputs import InputBuilder
    from modeling.grag.model import GRAGModel, wrap_backbone

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per method (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--offset", type=int, default=200, help="first SPC sample (skips the first, very short turns)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not SPC_VALID.exists():
        raise SystemExit(f"{SPC_VALID} is missing (see ../shared/data/README.md)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    samples = samples_from_file("spc", SPC_VALID, limit=args.offset + args.batch_size)[args.offset:]
    for s in samples:
        s.generic_response = s.reference
    t0 = time.perf_counter()
    base, tokenizer, description = load(args.backbone, device)
    load_s = time.perf_counter() - t0

    methods = {
        "presft_hist": dict(method="presft_hist"),
        "pregrag": dict(method="pregrag", beta=args.beta),
        "postgrag": dict(method="postgrag", alpha=args.alpha, beta=args.beta),
    }
    results: dict[str, dict] = {}
    breakdown: dict[str, float] = {}
    runs = {}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for name, overrides in methods.items():
        config = GRAGConfig(backbone=args.backbone, batch_size=args.batch_size, lr=1e-5, **overrides)
        model: GRAGModel = wrap_backbone(copy.deepcopy(base), tokenizer, config).to(device)
        model.train()
        builder = InputBuilder(tokenizer, config, is_encoder_decoder=model.is_encoder_decoder)
        batch = {k: v.to(device) for k, v in builder.collate([builder.features(s) for s in samples]).items()}
        phases = {"encode": 0.0, "decode": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}

        def timed(fn, key, phases=phases):
            def wrapper(*a, **kw):
                sync()
                start = time.perf_counter()
                out = fn(*a, **kw)
                sync()
                phases[key] += time.perf_counter() - start
                return out
            return wrapper

        model.encode_segments = timed(model.encode_segments, "encode")
        model.decode_from_encoder = timed(model.decode_from_encoder, "decode")
        model.decode_from_cache = timed(model.decode_from_cache, "decode")
        runs[name] = {
            "model": model, "batch": batch, "phases": phases, "times": [], "peaks": [],
            "optimizer": torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5),
            "tokens": sum(int(v.sum()) for k, v in batch.items() if k.endswith("_mask")),
        }
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(run) -> float:
        model, phases = run["model"], run["phases"]
        sync()
        start = time.perf_counter()
        with autocast:
            out = model(run["batch"])
        sync()
        mid = time.perf_counter()
        out["loss"].backward()
        sync()
        back = time.perf_counter()
        run["optimizer"].step()
        run["optimizer"].zero_grad(set_to_none=True)
        sync()
        end = time.perf_counter()
        phases["forward"] += mid - start
        phases["backward"] += back - mid
        phases["optimizer"] += end - back
        return end - start

    for run in runs.values():  # warm-up: allocator, lazy init, optimiser state
        step(run)
        for k in run["phases"]:
            run["phases"][k] = 0.0
    # Round-robin, so that the methods share whatever else the machine is doing.
    for _ in range(args.repeats):
        for run in runs.values():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                base_mem = torch.cuda.memory_allocated()
                run["times"].append(step(run))
                run["peaks"].append(torch.cuda.max_memory_allocated() - base_mem)
            else:
                with PeakRSS() as rss:
                    run["times"].append(step(run))
                run["peaks"].append(rss.peak - rss.base)
    for name, run in runs.items():
        median = statistics.median(run["times"])
        results[name] = {
            "step_s": round(median, 3), "samples_per_s": round(args.batch_size / median, 2),
            "peak_step_mem_mb": round(max(run["peaks"]) / 2**20, 1), "tokens_per_batch": run["tokens"],
            "step_s_all": [round(t, 3) for t in run["times"]],
        }
    n, phases = args.repeats, runs["postgrag"]["phases"]
    breakdown = {
        "encoder_calls_s": round(phases["encode"] / n, 3), "decoder_call_s": round(phases["decode"] / n, 3),
        "rest_of_forward_s": round((phases["forward"] - phases["encode"] - phases["decode"]) / n, 3),
        "backward_s": round(phases["backward"] / n, 3), "optimizer_s": round(phases["optimizer"] / n, 3),
    }
    ratio = results["postgrag"]["step_s"] / results["presft_hist"]["step_s"]
    dominant = max(breakdown, key=breakdown.get)
    print(json.dumps({
        "benchmark": "train_throughput", "backbone": description, "device": str(device),
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "batch_size": args.batch_size, "alpha": args.alpha, "beta": args.beta,
        "load_s": round(load_s, 1), "methods": results, "postgrag_over_presft_hist": round(ratio, 2), "target_ratio": 2.0,
        "postgrag_breakdown": breakdown, "postgrag_dominated_by": dominant,
    }))


if __name__ == "__main__":
    main()
