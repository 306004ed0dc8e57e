"""Throughput of the Table 3 metrics (modeling/metrics/) on real SPC text, and what reusing one BERTScorer saves.

Pairs come from ../shared/data/spc/Synthetic-Persona-Chat_test.csv: each utterance is scored as
the "hypothesis" for the next one (the reference), a stand-in for a system's responses with
real length and vocabulary. Measures samples per second of Char-F1, ROUGE-1/2/L and BLEU
together, of BERTScore with one scorer reused for the whole run, and the time of
``--calls`` calls of ``bert_score.score()`` (which loads the model on every call) against the
same batches on the reused scorer. No database. Prints one JSON line.

    .venv/bin/python benchmarks/metrics_speed.py [--pairs 2000] [--bert-model minilm] [--calls 8] [--batch 16]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPC_TEST = ROOT.parent / "shared" / "data" / "spc" / "Synthetic-Persona-Chat_test.csv"
SPEAKER = re.compile(r"^[\s*]*User\s*[12]\s*:[\s*]*", re.IGNORECASE)


def spc_pairs(limit: int) -> tuple[list[str], list[str]]:
    hyps, refs = [], []
    with open(SPC_TEST, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            turns = [SPEAKER.sub("", line).strip() for line in row["Best Generated Conversation"].splitlines()
                     if SPEAKER.match(line)]
            for prev, nxt in zip(turns, turns[1:]):
                hyps.append(prev)
                refs.append(nxt)
                if len(hyps) == limit:
                    return hyps, refs
    return hyps, refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--bert-model", default="minilm")
    parser.add_argument("--bert-layer", type=int, default=None)
    parser.add_argument("--calls", type=int, default=8, help="bert_score.score() calls to compare with reuse")
    parser.add_argument("--batch", type=int, default=16, help="pairs per call in that comparison")
    args = parser.parse_args()
    if not SPC_TEST.exists():
        sys.exit(f"{SPC_TEST} is not present (see ../shared/data/README.md)")

    import torch

    from modeling import metrics as m

    hyps, refs = spc_pairs(args.pairs)
    n = len(hyps)

    t0 = time.perf_counter()
    text = m.text_metrics(hyps, refs)
    text_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    scorer = m.BertScore(m.BertScoreConfig(model=args.bert_model, num_layers=args.bert_layer))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bert = m.bert_score(hyps, refs, scorer=scorer, batch_size=256)
    bert_s = time.perf_counter() - t0

    # The anti-pattern the issue warns about: bert_score.score() per batch reloads the model.
    import bert_score

    batches = [(hyps[i * args.batch:(i + 1) * args.batch], refs[i * args.batch:(i + 1) * args.batch])
               for i in range(args.calls)]
    t0 = time.perf_counter()
    for h, r in batches:
        bert_score.score(h, r, model_type=scorer.model_type, num_layers=scorer.num_layers, batch_size=64)
    per_call_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for h, r in batches:
        scorer.score(h, r)
    reuse_s = time.perf_counter() - t0

    print(json.dumps({
        "benchmark": "metrics_speed",
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, torch {torch.__version__}, "
                   f"{'cuda' if torch.cuda.is_available() else 'cpu'}",
        "pairs": n,
        "text_metrics_pairs_per_s": round(n / text_s, 1),
        "bert_model": args.bert_model, "bert_layer": scorer.num_layers,
        "bert_load_s": round(load_s, 2),
        "bert_pairs_per_s": round(n / bert_s, 1),
        "bert_score_call_per_batch_s": round(per_call_s, 2),
        "bert_scorer_reused_s": round(reuse_s, 2),
        "reuse_speedup": round(per_call_s / reuse_s, 1),
        "calls": args.calls, "batch": args.batch,
        "means": {k: round(v.value, 4) for k, v in {**text, **bert}.items()},
        "bleu_signature": text["bleu"].meta["signature"],
    }))


if __name__ == "__main__":
    main()
