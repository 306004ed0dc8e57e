"""Build the agreement report of a study as one JSON-ready dict; every renderer starts from it."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
from django.db import connections, router, transaction

from ..aggregation import LABELS, STATUS_VALID, StudyAggregate, study_aggregate, votes_summary
from ..models import Rating, Study
from . import stats
from .manifest import judge_runs_reliability, report_manifest
from .quality import annotator_quality

# Krippendorff's ordinal alpha needs the choices in order: the baseline better < similar < the
# challenger better.
ORDINAL_CODE = {"baseline": 0, "similar": 1, "challenger": 2}
ORDINAL_FROM_CODE = np.array([ORDINAL_CODE[label] for label in LABELS], dtype=float)


def min_confidence_parse(*, value, study: Study) -> int:
    """The minimum confidence from a form, query string or command line; the study's default when blank."""
    if value is None or str(value).strip() == "":
        return study.min_confidence
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"min_confidence must be a whole number from 1 to 5, got {value!r}") from None
    if not 1 <= number <= 5:
        raise ValueError(f"min_confidence must be from 1 to 5 (confidence is rated 1-5), got {number}")
    return number


def _question_keys(study: Study, ratings: pd.DataFrame) -> tuple[list[str], dict[str, dict]]:
    questions = {q.key: {"label": q.label, "text": q.text} for q in study.questions.all()}
    extra = sorted(set(ratings["question"].unique()) - set(questions))  # e.g. imported votes for a question since removed
    return [*questions, *extra], questions


def _human_agreement(*, human: pd.DataFrame, overlap: int) -> dict:
    """Fleiss, Krippendorff (nominal, ordinal) and percent agreement of one question's human ratings.

    No confidence filter here: these measure how far the annotators agree, every rating counts.
    """
    if human.empty:
        return {"fleiss_kappa": None, "fleiss_items": 0, "krippendorff_alpha": None,
                "krippendorff_alpha_ordinal": None, "percent_agreement": None}
    item_index, _ = pd.factorize(human["item_id"])
    code = human["code"].to_numpy()
    counts = np.bincount(item_index * len(LABELS) + code, minlength=(item_index.max() + 1) * len(LABELS))
    counts = counts.reshape(-1, len(LABELS))  # items x (baseline, challenger, similar)
    full = counts[counts.sum(axis=1) == overlap]  # Fleiss' kappa assumes the same number of raters per item
    # Raters x items, NaN where a rater did not rate an item (one current rating per rater and item).
    raters, rater_index = np.unique(human["rater"].to_numpy(dtype=object), return_inverse=True)
    nominal = np.full((len(raters), counts.shape[0]), np.nan)
    nominal[rater_index, item_index] = code
    ordinal = np.where(np.isnan(nominal), np.nan, ORDINAL_FROM_CODE[np.nan_to_num(nominal).astype(int)])
    return {
        "fleiss_kappa": stats.fleiss_kappa(counts=full),
        "fleiss_items": int(len(full)),
        "krippendorff_alpha": stats.krippendorff_alpha(reliability_data=nominal, level="nominal", value_domain=[0, 1, 2]),
        "krippendorff_alpha_ordinal": stats.krippendorff_alpha(
            reliability_data=ordinal, level="ordinal", value_domain=[0, 1, 2]),
        "percent_agreement": stats.percent_agreement(counts=counts),
    }


def _llm_versus_human(*, summary: dict, llm_valid: pd.Series, human_valid: pd.Series) -> dict:
    # llm_valid, human_valid: item_id -> label code of the items with a label
    """One LLM rater's labels for a question and how they agree with the human majority on items valid in both."""
    both = pd.concat([human_valid.rename("human"), llm_valid.rename("llm")], axis=1, join="inner")
    n = len(LABELS)
    human_code = both["human"].to_numpy(dtype=np.int64)
    llm_code = both["llm"].to_numpy(dtype=np.int64)
    confusion = np.bincount(human_code * n + llm_code, minlength=n * n).reshape(n, n)  # rows human, columns LLM
    compared = int(len(both))
    return {
        **summary,
        "cohen_kappa_vs_human": stats.cohen_kappa(confusion=confusion) if compared else None,
        "agreement_vs_human": float(np.trace(confusion) / compared) if compared else None,
        "compared": compared,
        "confusion": confusion.astype(int).tolist(),
    }


def _valid_labels(votes: pd.DataFrame, question: str) -> pd.Series:
    """item_id -> label code of the items with a label for ``question``."""
    if question not in votes.index.get_level_values("question"):
        return pd.Series(dtype=np.int64)
    of_question = votes.xs(question, level="question")
    return of_question.loc[of_question["status"] == STATUS_VALID, "code"]


@contextmanager
def _snapshot():
    """One consistent view of the database for the report's few queries, on PostgreSQL.

    Annotators keep rating while a report is made; under READ COMMITTED the ratings, the
    assignments and the manifest could come from different moments. Inside an outer
    transaction (tests, callers) the isolation level cannot change, so that one is used.
    """
    connection = connections[router.db_for_read(Rating)]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def report_build(*, study: Study, min_confidence: int | None = None, aggregate: StudyAggregate | None = None) -> dict:
    """The agreement report of ``study``: per question labels, agreement, win rate, LLM raters, annotators, manifest."""
    with _snapshot():
        return _report_build(study=study, min_confidence=min_confidence, aggregate=aggregate)


def _report_build(*, study: Study, min_confidence: int | None, aggregate: StudyAggregate | None) -> dict:
    if aggregate is None:
        aggregate = study_aggregate(study=study, min_confidence=min_confidence)
    ratings = aggregate.ratings
    keys, question_info = _question_keys(study, ratings)
    human_ratings = ratings[ratings["rater_kind"] == Rating.RaterKind.HUMAN]
    human_summary = votes_summary(votes=aggregate.human, questions=keys)
    llm_summary = {name: votes_summary(votes=votes, questions=keys) for name, votes in aggregate.llm.items()}
    questions = {}
    for key in keys:
        summary = human_summary[key]
        human_valid = _valid_labels(aggregate.human, key)
        distribution = summary["distribution"]
        questions[key] = {
            "label": question_info.get(key, {}).get("label", key),
            "text": question_info.get(key, {}).get("text", ""),
            **summary,
            **_human_agreement(human=human_ratings[human_ratings["question"] == key], overlap=study.overlap),
            "win_rate": stats.win_rate(wins=distribution["challenger"], losses=distribution["baseline"], seed=study.seed),
            "llm": {
                name: _llm_versus_human(summary=llm_summary[name][key], llm_valid=_valid_labels(votes, key),
                                        human_valid=human_valid)
                for name, votes in aggregate.llm.items()
            },
        }
    annotators = annotator_quality(study=study, ratings=ratings, min_confidence=aggregate.min_confidence)
    manifest = report_manifest(study=study, ratings=ratings, min_confidence=aggregate.min_confidence)
    return {
        "study": study.slug,
        "min_confidence": aggregate.min_confidence,
        "baseline": study.baseline_name,
        "challenger": study.challenger_name,
        "labels": list(LABELS),
        "questions": questions,
        "annotators": annotators,
        # Each judge run's reliability verdict, with its reasons: every renderer shows it beside the run.
        "judge_runs": judge_runs_reliability(manifest=manifest),
        "manifest": manifest,
    }
