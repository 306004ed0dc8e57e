"""A real, small Table 3 on CPU: PreSFT(Hist), PreGRAG and PostGRAG fine-tuned from SmolLM2-135M.

Training samples come from SPC's validation split (its train split is not available here),
test samples from SPC's test split, both drawn at random with a fixed seed. SPC ships no
generic responses, so R_G is generated for every sample by the app's LLM layer (the
generic-response prompt "spc-v1" of section 3.1 / Appendix A) with the same SmolLM2-135M-Instruct,
greedy; ``--generic reference-free`` replaces that with a cheap stand-in (R_G = the previous
agent turn, or "I see." when there is none) and says so in the output. Each method is trained
from the same pretrained weights with the same data order and seed, then generates greedily for
the test samples; the table has the paper's columns (Char-F1, ROUGE-1/2/L, BLEU, BPC, BERT-P/R/F1
with the bundled MiniLM, layer 6). Prints one JSON line.

    .venv/bin/python benchmarks/spc_small.py [--train 96] [--test 32] [--epochs 1] [--train-top-layers N] [--generic llm|reference-free]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPC = ROOT.parent / "shared" / "data" / "spc"
METHODS = {
    "PreSFT(Hist)": dict(method="presft_hist"),
    "PreGRAG": dict(method="pregrag"),
    "PostGRAG": dict(method="postgrag"),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pick(samples, n: int, seed: int):
    rng = random.Random(seed)
    # Skip greeting turns with a one-turn history: they say little about personalisation.
    pool = [s for s in samples if len(s.history) >= 3]
    # Shuffle and cut, not rng.sample: a smaller run is then a prefix of a larger one and
    # reuses its generated R_G.
    rng.shuffle(pool)
    return pool[:n]


def add_generic(samples, mode: str, batch_size: int) -> dict:
    start = time.perf_counter()
    if mode == "reference-free":
        for s in samples:
            previous = [t["text"] for t in s.history if t["role"] == "agent"]
            s.generic_response = previous[-1] if previous else "I see."
        return {"generic": "stand-in: previous agent turn (no LLM)", "seconds": round(time.perf_counter() - start, 1)}
    from modeling.llm.backends import GenerationSettings, TransformersBackend
    from modeling.llm.postprocess import clean_response
    from modeling.llm.prompts import augment_template

    template = augment_template("spc")
    # Generated R_G are kept under var/ so a rerun of the same samples does not pay for them again.
    cache_file = ROOT / "var" / f"spc_small_generic_{template.version}.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    todo = [s for s in samples if s.key not in cache]
    if todo:
        backend = TransformersBackend("smollm2")
        cache_file.parent.mkdir(exist_ok=True)

        def keep(indices, texts):
            # Saved after every batch: thousands of R_G take an hour here, and a killed run
            # must not pay for them again.
            cache.update({todo[i].key: t for i, t in zip(indices, texts)})
            cache_file.write_text(json.dumps(cache))
            log(f"R_G: {sum(s.key in cache for s in samples)} of {len(samples)} generated")

        # In chunks, in the order given (test samples first, then training samples in pick order),
        # so that an interrupted run leaves a usable prefix of samples with their R_G.
        chunk = 16 * batch_size
        for first in range(0, len(todo), chunk):
            part = todo[first:first + chunk]
            backend.generate([template.messages(history=s.history) for s in part],
                             settings=GenerationSettings(max_new_tokens=32), batch_size=batch_size,
                             on_batch=lambda indices, texts, base=first: keep([base + i for i in indices], texts))
    texts = [cache[s.key] for s in samples]
    empty = 0
    for s, raw in zip(samples, texts):
        s.generic_response = clean_response(raw) or "I see."
        empty += not clean_response(raw)
    return {"generic": f"LLM layer: smollm2, prompt {template.version}, greedy", "empty_fallbacks": empty,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    import torch

    from modeling import metrics as m
    from modeling.grag.config import GRAGConfig
    from modeling.grag.data import samples_from_file
    from modeling.grag.generate import generate_responses, score_reference
    from modeling.grag.model import wrap_backbone
    from modeling.grag.train import train
    from modeling.llm.loading import load_causal_lm, load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=96, help="training samples (SPC validation split)")
    parser.add_argument("--test", type=int, default=32, help="test samples (SPC test split)")
    parser.add_argument("--train-top-layers", type=int, default=None,
                        help="train only the top N of SmolLM2's 30 layers (and the GRAG layers); default all")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=0.05, help="paper's best beta on SPC for PostGRAG (section 6)")
    parser.add_argument("--max-source-len", type=int, default=192)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--generic", choices=["llm", "reference-free"], default="llm")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bertscore", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train_samples = pick(samples_from_file("spc", SPC / "Synthetic-Persona-Chat_valid.csv"), args.train, args.seed)
    test_samples = pick(samples_from_file("spc", SPC / "Synthetic-Persona-Chat_test.csv"), args.test, args.seed)
    generic_info = add_generic(test_samples + train_samples, args.generic, batch_size=16)

    base = load_causal_lm("smollm2", device="cpu")  # loaded once; each method trains its own copy
    scorer = None if args.no_bertscore else m.bert_scorer_get(m.BertScoreConfig(model=m.BERTSCORE_MINILM, num_layers=m.MINILM_LAYERS, device="cpu"))
    table, runs, examples = {}, {}, {}
    references = [s.reference for s in test_samples]
    for label, overrides in METHODS.items():
        config = GRAGConfig(
            backbone="smollm2", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, alpha=args.alpha,
            beta=args.beta, seed=args.seed, max_source_len=args.max_source_len, max_history_len=args.max_source_len - 64,
            max_new_tokens=args.max_new_tokens, checkpoint_every=0, train_top_layers=args.train_top_layers, generation_batch_size=16, **overrides,
        )
        tokenizer = copy.deepcopy(load_tokenizer("smollm2"))
        backbone = copy.deepcopy(base)
        model = wrap_backbone(backbone, tokenizer, config)
        t0 = time.perf_counter()
        log(f"{label}: training")
        with tempfile.TemporaryDirectory() as out:
            summary = train(config, train_samples, [], out, model=model, tokenizer=tokenizer, log=log)
        log(f"{label}: generating")
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.eval()
        hyps = generate_responses(model, tokenizer, test_samples, decoding="greedy")
        scores = score_reference(model, tokenizer, test_samples)
        gen_s = time.perf_counter() - t0
        row = {k: v.value for k, v in m.text_metrics(hyps, references).items()}
        row["bpc"] = m.bpc_run([s["nll_nats"] for s in scores], [s["n_chars"] for s in scores]).value
        if scorer is not None:
            row.update({k: v.value for k, v in m.bert_score(hyps, references, scorer=scorer).items()})
        table[label] = {k: round(v, 4) for k, v in row.items()}
        last = summary.get("last_train") or {}
        runs[label] = {"steps": summary["steps"], "train_s": round(train_s, 1), "generate_and_score_s": round(gen_s, 1),
                       "last_step_losses": {k: round(v, 4) for k, v in last.items() if k.startswith(("l_", "loss"))}}
        examples[label] = hyps[:3]
        # Each method's row as soon as it exists: a large run takes hours, and one cut short
        # should still leave the rows it finished.
        log(f"{label}: {json.dumps({'table3': table[label], 'run': runs[label]})}")
        model.style.remove()
        del model, backbone
    print(json.dumps({
        "benchmark": "spc_small", "backbone": "SmolLM2-135M-Instruct (full fine-tune, float32, CPU)",
        "train_samples": len(train_samples), "train_source": "SPC validation split (random, >=3 history turns)",
        "test_samples": len(test_samples), "test_source": "SPC test split (random, >=3 history turns)",
        "train_top_layers": args.train_top_layers, "max_source_len": args.max_source_len, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "alpha": args.alpha, "beta": args.beta,
        "generic_responses": generic_info, "decoding": "greedy", "max_new_tokens": args.max_new_tokens,
        "bertscore": None if scorer is None else "minilm (all-MiniLM-L6-v2), layer 6",
        "table3": table, "runs": runs, "examples": {"reference": references[:3], **examples},
        "torch_threads": torch.get_num_threads(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "total_s": round(time.perf_counter() - started, 1),
    }))


if __name__ == "__main__":
    main()
