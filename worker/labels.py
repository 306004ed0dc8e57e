"""What each job parameter and result key is called, its unit and how to show its value.

One home for these words: launch forms take their labels and help from here (or, for GRAG
settings, from GRAGConfig's field metadata, modeling/grag/config.py), and job pages label the
stored params and results with the same words. A key with no entry is shown humanised.
"""
from dataclasses import dataclass

from judge.reliability import DEFAULT_MIN_OPTION_MASS
from modeling.grag.config import launch_fields


@dataclass(frozen=True)
class Term:
    """label: words a researcher reads; help is rendered as HTML by Django's forms, so no angle brackets; unit: shown after the value (and in headers);
    show: how the value is rendered and linked (see worker.display): text, number, path,
    seconds, bool, dataset, system, systems, study, method, methods, judge_run, mapping, reliability, hidden;
    help: the launch form's help text."""

    label: str
    unit: str = ""
    show: str = "text"
    help: str = ""


TERMS: dict[str, Term] = {
    # What a job reads.
    "dataset": Term("Dataset", show="dataset", help="The imported dataset to use."),
    "kind": Term("Format", help="The dataset's file format."),
    "path": Term("File", show="path", help="File (or PFG folder) on the worker's filesystem."),
    "split": Term("Split", help="Which part of the dataset: train, valid or test."),
    "name": Term("Dataset name", help="A short name (letters, digits, hyphens); defaults to the format name."),
    "limit": Term("Limit", "samples", "number", help="Use only the first N samples (blank: all)."),
    "model": Term("Model", help="Model id or folder; 'smollm2' is the offline SmolLM2-135M-Instruct."),
    "batch_size": Term("Batch size", "samples", "number", help="Prompts generated together."),
    "method": Term("Method", show="method", help="Which method to train or prompt (paper, section 4.2.2)."),
    "n_shot": Term("Examples in the prompt", show="number", help="n for n-shot ICL (0 to 5)."),
    "seeds": Term("Seeds", help="For n > 0, e.g. 0,1,2,3,4 (the paper's five seeds; default)."),
    "shot_split": Term("Examples drawn from", help="The split the n examples are drawn from."),
    "backbone": Term("Backbone", help="Model to fine-tune, e.g. smollm2 here or facebook/bart-base on a GPU worker."),
    "system_name": Term("System", show="system", help="Name of the new system; defaults to the dataset and method, e.g. spc-postgrag."),
    "system": Term("System", show="system", help="The trained or prompted system."),
    "decoding": Term("Decoding", help="Greedy, beam search or sampling (paper: greedy)."),
    "bert_model": Term("BERTScore model",
                       help="Name, folder, or 'minilm' (offline); default $BERTSCORE_MODEL or roberta-large."),
    "bert_layer": Term("BERTScore layer", show="number", help="Layer, for a BERTScore model given as a folder."),
    "slug": Term("Study", show="study", help="Short name of the new study (letters, digits, hyphens)."),
    "baseline": Term("Baseline", show="system", help="The system the challenger is compared with."),
    "challenger": Term("Challenger", show="system", help="The system being evaluated."),
    "overlap": Term("Annotators per item", "annotators", "number", help="How many annotators rate each item."),
    "trap_rate": Term("Attention checks", show="number", help="Share of items that are attention checks."),
    "annotators": Term("Annotators"),
    "study": Term("Study", show="study", help="The study whose items the judge rates."),
    "prompt_version": Term("Judge prompt version"),
    "run_id": Term("Judge run", show="judge_run"),
    "epochs": Term("Epochs", show="number"),
    "grad_accum": Term("Gradient accumulation", show="number"),
    "methods": Term("Methods", show="methods", help="The methods to train; the baseline and challenger are among them."),
    "llm": Term("Generic-response LLM", help="Model that writes the generic responses R_G (paper: Llama-3.1-8B-Instruct)."),
    "judge_model": Term("Judge model", help="LLM judge (paper: Qwen2.5-32B-Instruct); 'smollm2' works offline."),
    "train_split": Term("Training split", help="Split the systems are trained on."),
    "eval_split": Term("Evaluation split", help="Split the systems generate, are scored and studied on."),
    "train_limit": Term("Training samples", "samples", "number", help="Use only the first N training samples (blank: all)."),
    "eval_limit": Term("Evaluation samples", "samples", "number",
                       help="Generate for and study only the first N evaluation samples (blank: all)."),
    "valid_split": Term("Validation split", help="Split training scores L_P on (the dataset's valid split, fixed at launch; blank: none)."),
    "valid_limit": Term("Validation samples", "samples", "number",
                        help="Score L_P on only the first N validation samples (blank: all); their generic responses are written too."),
    "study_slug": Term("Study", show="study", help="Short name of the study; defaults to dataset-baseline-vs-challenger, e.g. spc-presft_hist-vs-postgrag."),
    "augment": Term("Generate generic responses", show="bool", help="Run the augment stage first (skip if R_G exists)."),
    "judge": Term("Run the LLM judge", show="bool", help="Judge the study with the LLM after it is created."),
    "config": Term("Other settings", show="mapping"),
    "shards": Term("Shards", show="number",
                   help="Split the work into this many parts that the queue's free workers run in parallel "
                        "(blank: from JOB_SHARDS and the work's size; 1: one worker; docs/llm.md)."),
    "sharded": Term("Shards", show="hidden"),
    "shard": Term("Shard", show="number"),
    "range": Term("Range of the work", help="Items or samples start to stop (0-based, stop excluded)."),
    "counts": Term("Counts per system", show="hidden"),
    # What a job made.
    "conversations": Term("Conversations", show="number"),
    "samples": Term("Samples", show="number"),
    "skipped_lines": Term("Lines skipped", show="number"),
    "merged_lines": Term("Lines merged", show="number"),
    "unchanged": Term("Unchanged since the last import", show="bool"),
    "generated": Term("Generated", "responses", "number"),
    "cached": Term("From the cache", "responses", "number"),
    "already_done": Term("Already done", "samples", "number"),
    "empty": Term("Empty generic responses", "samples", "number"),
    "seconds": Term("Time taken", show="seconds"),
    "valid_samples": Term("Validation samples", show="number"),
    "steps": Term("Optimiser steps", show="number"),
    "total_steps": Term("Planned optimiser steps", show="number"),
    "best_valid_l_p": Term("Best validation loss L_P", "nats per token", "number"),
    "resumed": Term("Resumed from a checkpoint", show="bool"),
    "best_dir": Term("Best checkpoint", show="path"),
    "checkpoint_dir": Term("Last checkpoint", show="path"),
    "created": Term("New responses", show="number"),
    "existing": Term("Responses that existed", show="number"),
    "responses": Term("Responses", show="number"),
    "corpus": Term("Corpus-level metrics", show="mapping"),
    "rows_written": Term("Metric rows written", show="number"),
    "skipped": Term("Metrics skipped", show="mapping"),
    "meta": Term("Details", show="hidden"),
    "items": Term("Items", show="number"),
    "study_id": Term("Study id", show="hidden"),
    "systems": Term("Systems", show="systems"),
    "system_ids": Term("System ids", show="hidden"),
    "seed_group": Term("Seed group"),
    "run": Term("Judge run"),
    "verdicts": Term("Verdicts", show="number"),
    "failed": Term("Failed verdicts", show="number"),
    "failures": Term("Failures", show="hidden"),
    "consistency": Term("Same verdict in both orders", "share per question", "mapping"),
    "position_bias": Term("Position bias P(A) − P(B)", "per question", "mapping"),
    "reliability": Term("Reliability", show="reliability"),
    "pong": Term("Worker answered", show="bool"),
    "database": Term("Database"),
    "host": Term("Worker host"),
    "torch_threads": Term("torch CPU threads", show="number"),
}

# Keys whose meaning depends on the job's kind.
KIND_TERMS: dict[str, dict[str, Term]] = {
    "import": {"limit": Term("Limit", "conversations", "number", help="Import only the first N conversations."),
               "dataset": Term("Dataset", show="dataset")},
    "pipeline": {"baseline": Term("Baseline", show="method", help="The method the challenger is compared with."),
                 "challenger": Term("Challenger", show="method", help="The method being evaluated."),
                 "dataset": Term("Dataset", show="dataset", help="The imported dataset the whole pipeline runs on.")},
    "judge": {"name": Term("Rater name", help="Name of the judge in reports, e.g. LLM-145."),
              "limit": Term("Limit", "items", "number", help="Judge only the first N items of the study (blank: all)."),
              "model": Term("Judge model", help=TERMS["judge_model"].help),
              "min_option_mass": Term("Minimum option mass", show="number",
                                      help=f"A verdict whose option letters get less of the next-token probability "
                                           f"abstains (default {DEFAULT_MIN_OPTION_MASS} for a new run; docs/judge.md).")},
    "icl": {"model": Term("LLM", help="The model prompted in context; 'smollm2' works offline.")},
    "augment": {"model": Term("Generic-response LLM", help=TERMS["llm"].help), "batch_size": TERMS["batch_size"]},
}


def _config_terms() -> dict[str, Term]:
    return {f.name: Term(f.metadata["label"], show="number", help=f.metadata["help"]) for f in launch_fields()}


CONFIG_TERMS = _config_terms()


def term(key: str, kind: str | None = None) -> Term:
    """The Term for a job's param or result ``key`` (``kind``: the job's kind, for keys that differ)."""
    if kind and key in KIND_TERMS.get(kind, {}):
        return KIND_TERMS[kind][key]
    if key in CONFIG_TERMS:
        return CONFIG_TERMS[key]
    if key in TERMS:
        return TERMS[key]
    return Term(key.replace("_", " ").capitalize())
