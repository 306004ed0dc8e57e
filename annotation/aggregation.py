"""The one aggregation of ratings into labels, used by the pages, the API, the exports and the tests.

The paper (section 5.5) aggregates each question "by majority vote" over three annotators,
excludes turns "when the three annotators all disagree", and filters "based on confidence
level" before counting valid annotations (Table 5, "# Valid Annotations"). Made exact here:

- per item and question, ratings with confidence below the study's minimum are dropped;
- the label is the choice held by at least 2 of the kept ratings (and by more kept ratings
  than any other choice, which only matters with more than three raters: 2-2 is no label);
- otherwise the item has no label for that question and is left out of every share.

Only current ratings (``is_current``) of normal items count, less those of crowd participants
screened out or (per study setting) who left (``participants.ratings_counted``): gold and trap items measure the
annotators, not the systems. An LLM rater (a judge run) is its own group: with one rating per
item its label is its own choice once the same confidence filter has been applied. A judge's
flipped verdict (``meta["flipped"]``: its two orders disagreed, so it voted "similar") passes
the filter at every minimum: its confidence records how sure the judge was of two answers
that contradict each other, not of "similar", so a study's threshold, then or later, must not
decide whether it counts (docs/judge.md).

Everything is vectorised over one DataFrame loaded with a single query, so a study of
thousands of items aggregates in milliseconds and no code path issues per-item queries.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from django.db import connections
from django.db.models import BooleanField, ExpressionWrapper, Q

from .models import CONFIDENCE_MAX, CONFIDENCE_MIN, Item, Rating, Study, confidence_in_scale
from .participants import ratings_counted  # the one rule of which ratings count (issue 21)

# Canonical choices in the paper's order (Figure 2: A = R^B better, B = R^C better, S = similar).
LABELS: tuple[str, ...] = (Rating.Choice.BASELINE.value, Rating.Choice.CHALLENGER.value, Rating.Choice.SIMILAR.value)
LABEL_CODE = {label: code for code, label in enumerate(LABELS)}


def choice_codes(choices) -> np.ndarray:
    """0, 1, 2 for baseline, challenger, similar (LABELS order), -1 for anything else; vectorised."""
    return pd.Index(LABELS).get_indexer(pd.Index(choices)).astype(np.int64)

# Why an item has no label for a question.
STATUS_VALID = "valid"
STATUS_CONFIDENCE = "confidence"  # it had a majority over all its ratings, the confidence filter removed it
STATUS_NO_MAJORITY = "no_majority"  # no choice had a majority even before the filter (e.g. all disagree)

RATING_COLUMNS = [
    "item_id", "item_key", "question", "rater", "rater_kind", "choice", "confidence", "baseline_side", "shown_choice",
    "flipped",
]  # ratings_frame adds "code", the choice's index in LABELS; flipped: a judge's order-debiased "similar"
VOTE_COLUMNS = ["label", "code", "status", "ratings", "kept"]  # code: the label's LABELS index, -1 for none


@dataclass
class StudyAggregate:
    """The labels of one study: human majority votes and each LLM rater's own labels."""

    study: Study
    min_confidence: int
    ratings: pd.DataFrame  # every current rating of a normal item, one row each (RATING_COLUMNS)
    human: pd.DataFrame  # index (question, item_id); columns VOTE_COLUMNS
    llm: dict[str, pd.DataFrame] = field(default_factory=dict)  # rater name -> votes like `human`

    def summary(self) -> dict[str, dict]:
        """Per question: items, valid, distribution and what each filter removed (human raters)."""
        return votes_summary(votes=self.human)


def frame_from_values(query, columns: list[str]) -> pd.DataFrame:
    """Run a ``values_list`` query on a plain cursor into a DataFrame.

    For columns that need no conversion (ints, floats, text) this skips the ORM's per-row
    iterator, which makes loading tens of thousands of rows several times faster.
    """
    sql, params = query.query.sql_with_params()
    with connections[query.db].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return pd.DataFrame.from_records(rows, columns=columns)


def ratings_frame(*, study: Study) -> pd.DataFrame:
    """Load the current ratings of the study's normal items with one query."""
    query = (
        ratings_counted(study=study).filter(item__kind=Item.Kind.NORMAL)
        .order_by()
        .annotate(flipped=ExpressionWrapper(Q(meta__flipped=True), output_field=BooleanField()))
        .values_list("item_id", "item__key", "question", "rater", "rater_kind", "choice", "confidence",
                     "baseline_side", "shown_choice", "flipped")
    )
    frame = frame_from_values(query, RATING_COLUMNS)
    # SQLite gives 0/1, PostgreSQL True/False, either None where meta has no "flipped".
    frame["flipped"] = frame["flipped"].map(bool).astype(bool)
    frame["confidence"] = frame["confidence"].astype("int64")
    frame["item_id"] = frame["item_id"].astype("int64")
    frame["code"] = choice_codes(frame["choice"])  # computed once; every statistic works on codes
    return frame


def labels_from_counts(counts: np.ndarray, min_votes: int) -> np.ndarray:
    """Code of the choice with a strict majority of at least ``min_votes`` per row, else -1."""
    top = counts.max(axis=1)
    unique_top = (counts == top[:, None]).sum(axis=1) == 1
    return np.where((top >= min_votes) & unique_top, counts.argmax(axis=1), -1)


def majority_vote(*, ratings: pd.DataFrame, min_confidence: int, min_votes: int = 2) -> pd.DataFrame:
    """Label each (question, item) of ``ratings`` by majority vote after the confidence filter.

    ``ratings`` needs the columns question, item_id, choice and confidence; a true ``flipped``
    column (optional) keeps that rating whatever its confidence. ``min_votes`` is 2
    for the human majority (issue: "held by at least 2 of the kept ratings") and 1 for a single
    LLM rater, whose label is its own kept choice. Returns a frame indexed by (question,
    item_id) with the label (None when excluded), the status (valid / confidence /
    no_majority), and how many ratings there were and were kept.
    """
    if ratings.empty:
        index = pd.MultiIndex.from_arrays([[], []], names=["question", "item_id"])
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("label", "status") else "int64") for c in VOTE_COLUMNS},
                            index=index)
    code = ratings["code"].to_numpy() if "code" in ratings else choice_codes(ratings["choice"])
    if (code < 0).any():
        unknown = sorted(set(ratings["choice"][code < 0]))
        raise ValueError(f"unknown choice(s) {unknown}; expected one of {list(LABELS)}")
    grouped = ratings.groupby(["question", "item_id"], sort=True)
    group = grouped.ngroup().to_numpy()
    n_groups = int(group.max()) + 1
    kept = ratings["confidence"].to_numpy() >= min_confidence
    if "flipped" in ratings:
        kept |= ratings["flipped"].to_numpy(dtype=bool)
    flat = group * len(LABELS) + code
    counts_all = np.bincount(flat, minlength=n_groups * len(LABELS)).reshape(n_groups, len(LABELS))
    counts_kept = np.bincount(flat[kept], minlength=n_groups * len(LABELS)).reshape(n_groups, len(LABELS))
    label_kept = labels_from_counts(counts_kept, min_votes)
    label_all = labels_from_counts(counts_all, min_votes)
    names = np.array([*LABELS, None], dtype=object)  # code -1 picks None
    status = np.where(label_kept >= 0, STATUS_VALID, np.where(label_all >= 0, STATUS_CONFIDENCE, STATUS_NO_MAJORITY))
    index = grouped.size().index
    # object dtype, not pandas' string dtype, so that "no label" stays None (JSON null), not NaN
    return pd.DataFrame(
        {"label": pd.Series(names[label_kept], index=index, dtype=object),
         "code": label_kept,
         "status": pd.Series(status, index=index, dtype=object),
         "ratings": counts_all.sum(axis=1), "kept": counts_kept.sum(axis=1)},
        index=index,
    )


def votes_summary(*, votes: pd.DataFrame, questions: list[str] | None = None) -> dict[str, dict]:
    """Per question: items rated, valid labels, their distribution and the items each filter dropped."""
    question = votes.index.get_level_values("question")
    keys = list(questions) if questions is not None else sorted(question.unique())
    status = votes.groupby([question, votes["status"]]).size().to_dict() if len(votes) else {}
    valid = votes["status"].to_numpy() == STATUS_VALID
    labels = votes[valid].groupby([question[valid], votes["label"][valid]]).size().to_dict() if valid.any() else {}
    summary = {}
    for key in keys:
        n = {name: int(status.get((key, name), 0)) for name in (STATUS_VALID, STATUS_CONFIDENCE, STATUS_NO_MAJORITY)}
        summary[key] = {
            "items": sum(n.values()),
            "valid": n[STATUS_VALID],
            "distribution": {label: int(labels.get((key, label), 0)) for label in LABELS},
            "dropped_confidence": n[STATUS_CONFIDENCE],
            "dropped_no_majority": n[STATUS_NO_MAJORITY],
        }
    return summary


def study_aggregate(*, study: Study, min_confidence: int | None = None, ratings: pd.DataFrame | None = None) -> StudyAggregate:
    """Aggregate a study: the human majority and each LLM rater's labels, with one query."""
    if min_confidence is None:
        min_confidence = study.min_confidence
    if not confidence_in_scale(int(min_confidence)):
        raise ValueError(f"min_confidence must be an integer from {CONFIDENCE_MIN} to {CONFIDENCE_MAX}, got {min_confidence!r}")
    if ratings is None:
        ratings = ratings_frame(study=study)
    human = ratings[ratings["rater_kind"] == Rating.RaterKind.HUMAN]
    llm_ratings = ratings[ratings["rater_kind"] == Rating.RaterKind.LLM]
    return StudyAggregate(
        study=study,
        min_confidence=int(min_confidence),
        ratings=ratings,
        human=majority_vote(ratings=human, min_confidence=min_confidence, min_votes=2),
        llm={
            str(name): majority_vote(ratings=group, min_confidence=min_confidence, min_votes=1)
            for name, group in llm_ratings.groupby("rater", sort=True)
        },
    )
