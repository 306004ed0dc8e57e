"""Judge throughput: option-token scoring with prefix-cache reuse against "generate and grep".

The same N real SPC test turns (two different responses each: the reference and a later reply of
the same agent) x the paper's four questions (Table 5), judged by the same model on this machine:

- naive: one order (``--naive-orders AB``: both), one prompt at a time, greedy ``generate`` of up to 64 tokens, then the text is
  searched for the answer (a letter A / B / S, "[[A]]", "Response A", "similar", ...). By default with the usual
  judge prompt (FastChat's pairwise MT-Bench prompt: a short explanation, then the verdict in [[ ]]);
  ``--naive-prompt letter`` generates with our own one-letter prompt instead (``--prompt-version``);
- ours (``judge.scoring``): BOTH orders, one forward pass per prompt with the item's shared prefix
  encoded once and the suffixes batched, verdict from the option-token probabilities.

- server (``--server URL``, issue 19): ours over an OpenAI-compatible server (a llama.cpp server
  with the same SmolLM2 GGUF, 4-bit Q4_1 weights), the same prompts, both orders, verdicts from
  one output token's top log-probabilities; with its agreement with ours on the choice.

A judgment is one (item, question) verdict; ours does twice the prompts (both orders) for it.
The ways alternate item by item so that all see the same load on a shared CPU.
Prints one JSON line. Usage: python benchmarks/judge_throughput.py [--items 40] [--naive-items 40]
    [--naive-prompt explain|letter] [--prompt-version v2] [--server http://127.0.0.1:8080/v1]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grag_site.settings.local")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPC_TEST = ROOT.parent / "shared" / "data" / "spc" / "Synthetic-Persona-Chat_test.csv"

# What a careful "generate and grep" does: an explicit verdict format first, then looser phrasings.
_PATTERNS = [
    (re.compile(r"^\W*([ABS])\b"), None),
    (re.compile(r"\[\[([ABS])\]\]"), None),
    (re.compile(r"\bresponse\s+([AB])\b(?:\s+is\s+better)?", re.IGNORECASE), None),
    (re.compile(r"\b(similar|tie|same)\b", re.IGNORECASE), "S"),
    (re.compile(r"\b(?:answer|choice)\s*(?:is)?\s*[:=]?\s*([ABS])\b", re.IGNORECASE), None),
]


def naive_explain_template():
    """The usual "generate and grep" judge: FastChat's pairwise MT-Bench prompt (``pair-v2``), adapted
    to the same fields and question as ours: a short explanation first, then a verdict in [[ ]]."""
    from judge.prompts import PROMPT_V1, PromptTemplate

    return PromptTemplate(
        version="naive-explain (FastChat pair-v2 style)",
        system=(
            "Please act as an impartial judge and evaluate two responses that a personalised dialogue agent "
            "could give at the same point of the conversation shown below, with respect to the question asked. "
            "Begin your evaluation by comparing the two responses and provide a short explanation. Avoid any "
            "position biases and ensure that the order in which the responses were presented does not influence "
            "your decision. Do not allow the length of the responses to influence your evaluation. Be as "
            "objective as possible. After providing your explanation, output your final verdict by strictly "
            'following this format: "[[A]]" if Response A is better, "[[B]]" if Response B is better, and '
            '"[[S]]" if they are similar.'
        ),
        context=PROMPT_V1.context,
        generic=PROMPT_V1.generic,
        comparison="[Response A]\n{response_a}\n\n[Response B]\n{response_b}\n\n[Question]\n{question}",
    )


def naive_parse(text: str) -> str | None:
    """The option a generated answer names, or None when it names none (or several different ones)."""
    for pattern, fixed in _PATTERNS:
        found = {fixed or m.upper() for m in pattern.findall(text)}
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--naive-items", type=int, default=None, help="Items for the naive way (default: all).")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--naive-orders", default="A", choices=["A", "AB"],
                        help="Orders the naive way judges: A (baseline shown first, the plain naive way) or AB (both, like ours).")
    parser.add_argument("--prompt-version", default=None, help="our judge prompt (judge.prompts; default: the app's default)")
    parser.add_argument("--naive-prompt", default="explain", choices=["explain", "letter"],
                        help="explain: the usual judge prompt (explanation, then [[A]]/[[B]]/[[S]]); "
                             "letter: our own one-letter prompt, generated instead of scored")
    parser.add_argument("--server", default=None,
                        help="base URL of an OpenAI-compatible server serving the same model (e.g. a llama.cpp server)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for both ways (on a CPU shared with other jobs, 1 avoids oversubscription)")
    args = parser.parse_args()

    import django

    django.setup()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from annotation.models import DEFAULT_QUESTIONS
    from judge.devdata import spc_judge_pairs
    from judge.prompts import DEFAULT_PROMPT_VERSION, prompt_template
    from judge.scoring import OPTION_SPELLINGS, encode_messages, score_from_mass, score_prompt_groups
    from judge.services import judge_item_prompts
    from modeling.llm.loading import load_causal_lm, load_tokenizer

    if not SPC_TEST.exists():
        sys.exit(f"{SPC_TEST} is missing (see ../shared/data/README.md)")
    pairs = spc_judge_pairs(SPC_TEST, n=args.items)
    questions = [SimpleNamespace(key=k, text=text) for k, _, text in DEFAULT_QUESTIONS]
    items = [SimpleNamespace(pk=i, **{k: p[k] for k in ("persona", "history", "generic_response",
                                                         "baseline_response", "challenger_response")})
             for i, p in enumerate(pairs)]
    t0 = time.monotonic()
    tokenizer, model = load_tokenizer(args.model), load_causal_lm(args.model)
    load_seconds = time.monotonic() - t0
    ours_template = prompt_template(args.prompt_version or DEFAULT_PROMPT_VERSION)
    prompts = [judge_item_prompts(item=item, questions=questions, template=ours_template) for item in items]
    if args.naive_prompt == "explain":
        naive_template = naive_explain_template()
        naive_prompts = [judge_item_prompts(item=item, questions=questions, template=naive_template) for item in items]
    else:  # the very prompts ours scores, generated instead
        naive_template, naive_prompts = ours_template, prompts
    score_prompt_groups(model, tokenizer, [[encode_messages(tokenizer, m) for _, _, m in prompts[0][:2]]])  # warm up

    # The two ways alternate item by item, so that both see the same load on a shared CPU.
    naive_items = min(len(items) if args.naive_items is None else args.naive_items, len(items))
    server = None
    if args.server:
        from modeling.llm.backends import OpenAICompatibleBackend

        server = OpenAICompatibleBackend(args.model, args.server)
        server.score_options([[m for _, _, m in prompts[0][:2]]], OPTION_SPELLINGS)  # warm up
    server_scores, server_seconds = [], 0.0
    ours_scores, ours_seconds = [], 0.0
    unparseable, naive_n, naive_seconds, new_tokens = 0, 0, 0.0, []
    examples = []
    for i in range(len(items)):
        # Ours: from the chat messages to the verdicts, both orders, as judge_run_execute does.
        t0 = time.monotonic()
        ours_scores += score_prompt_groups(model, tokenizer, [[encode_messages(tokenizer, m) for _, _, m in prompts[i]]])
        ours_seconds += time.monotonic() - t0
        if server is not None:
            t0 = time.monotonic()
            masses = server.score_options([[m for _, _, m in prompts[i]]], OPTION_SPELLINGS)
            server_scores += [[score_from_mass(m) for m in g] for g in masses]
            server_seconds += time.monotonic() - t0
        if i >= naive_items:
            continue
        # Naive: one prompt at a time, greedy generation of up to max_new_tokens, then parse the text.
        t0 = time.monotonic()
        with torch.inference_mode():
            for _key, side, messages in naive_prompts[i]:
                if side not in args.naive_orders:
                    continue
                ids = torch.tensor([encode_messages(tokenizer, messages)], device=model.device)
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                     do_sample=False, pad_token_id=tokenizer.pad_token_id)
                generated = out[0, ids.shape[1]:]
                text = tokenizer.decode(generated, skip_special_tokens=True)
                new_tokens.append(int(generated.shape[0]))
                naive_n += 1
                if naive_parse(text) is None:
                    unparseable += 1
                    if len(examples) < 3:
                        examples.append(text[:120])
        naive_seconds += time.monotonic() - t0
    judgments = len(items) * len(questions)
    prompt_tokens = [s.n_tokens for g in ours_scores for s in g]
    cached = [s.cached_prefix_tokens for g in ours_scores for s in g]
    naive_judgments = naive_n // len(args.naive_orders)

    ours_rate = judgments / ours_seconds
    naive_rate = naive_judgments / naive_seconds if naive_seconds else None
    result = {
        "benchmark": "judge_throughput",
        "model": args.model,
        "device": str(model.device),
        "torch_threads": torch.get_num_threads(),
        "items": len(items),
        "questions": len(questions),
        "load_seconds": round(load_seconds, 1),
        "ours": {"prompt": ours_template.version, "judgments": judgments, "orders": 2, "prompts_scored": judgments * 2, "seconds": round(ours_seconds, 2),
                 "judgments_per_s": round(ours_rate, 3), "mean_prompt_tokens": round(sum(prompt_tokens) / len(prompt_tokens), 1),
                 "mean_cached_prefix_tokens": round(sum(cached) / len(cached), 1),
                 "failed": sum(s.failed for g in ours_scores for s in g)},
        "naive": {"prompt": naive_template.version, "judgments": naive_judgments, "orders": len(args.naive_orders),
                  "max_new_tokens": args.max_new_tokens,
                  "mean_new_tokens": round(sum(new_tokens) / len(new_tokens), 1) if new_tokens else None,
                  "seconds": round(naive_seconds, 2), "judgments_per_s": round(naive_rate, 3) if naive_rate else None,
                  "unparseable_share": round(unparseable / naive_n, 4) if naive_n else None,
                  "unparseable_examples": examples},
        "ratio": round(ours_rate / naive_rate, 2) if naive_rate else None,
    }
    if server is not None:
        pairs = [(o, s) for go, gs in zip(ours_scores, server_scores) for o, s in zip(go, gs)
                 if not o.failed and not s.failed]
        result["server"] = {
            "base_url": server.base_url, "judgments": judgments, "orders": 2, "seconds": round(server_seconds, 2),
            "judgments_per_s": round(judgments / server_seconds, 3),
            "failed": sum(s.failed for g in server_scores for s in g),
            "choice_agreement_with_ours": round(sum(o.choice == s.choice for o, s in pairs) / len(pairs), 4),
            "max_probability_difference": round(max(abs(o.probabilities[k] - s.probabilities[k])
                                                    for o, s in pairs for k in o.probabilities), 4),
            "usage": server.usage(),
        }
        result["server_over_ours"] = round(result["server"]["judgments_per_s"] / ours_rate, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
