"""Per-annotator quality: how often each human agrees with the others, how sure and how fast they are.

Agreement is measured against the leave-one-out majority (the other raters' kept ratings of
the same item and question, under the same majority rule as the report), so an annotator is
never compared with a label they helped to make. The quality-control figures (gold and
identical-pair pass rate, repeated-pair consistency) are ``selectors.annotator_quality_control``,
the same the staff page and API show. ``left_share`` here counts the normal items only (the
sample of the position-bias test); the staff page's ``left_preference`` counts every item.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from annotation.aggregation import LABELS, choice_codes, frame_from_values, labels_from_counts
from annotation.models import Assignment, Item, Rating, Study
from annotation.selectors import QUALITY_CONTROL_NONE, annotator_quality_control

# Flag an annotator whose A-vs-B choices lean to one side this surely (two-sided sign test).
POSITION_BIAS_P = 0.01
# Below this agreement with the others an annotator does no better than picking at random.
CHANCE_AGREEMENT = 1 / len(LABELS)
MIN_COMPARED_FOR_CHANCE_FLAG = 10


def annotator_agreement(*, study: Study, ratings: pd.DataFrame, min_confidence: int) -> list[dict]:
    """One row per human rater: counts, leave-one-out agreement, confidence, speed, side preference, flags."""
    human = ratings[ratings["rater_kind"] == Rating.RaterKind.HUMAN]
    if human.empty:
        return []
    group = human.groupby(["question", "item_id"], sort=False).ngroup().to_numpy()
    code = human["code"].to_numpy() if "code" in human else choice_codes(human["choice"])
    kept = (human["confidence"].to_numpy() >= min_confidence).astype(np.int64)
    n_labels = len(LABELS)
    counts = np.bincount(group * n_labels + code, weights=kept, minlength=(group.max() + 1) * n_labels)
    counts = counts.reshape(-1, n_labels).astype(np.int64)
    # The other raters' kept votes for this rating's item and question.
    others = counts[group] - kept[:, None] * np.eye(n_labels, dtype=np.int64)[code]
    loo_label = labels_from_counts(others, 2)
    shown = human["shown_choice"].to_numpy()
    frame = pd.DataFrame({
        "rater": human["rater"].to_numpy(),
        "item_id": human["item_id"].to_numpy(),
        "confidence": human["confidence"].to_numpy(),
        "compared": loo_label >= 0,
        "agrees": (loo_label >= 0) & (loo_label == code),
        "left": shown == "A",
        "decisive_shown": np.isin(shown, ["A", "B"]),
    })
    per_rater = frame.groupby("rater", sort=True).agg(
        ratings=("item_id", "size"), items=("item_id", "nunique"), mean_confidence=("confidence", "mean"),
        compared=("compared", "sum"), agrees=("agrees", "sum"), left=("left", "sum"), decisive_shown=("decisive_shown", "sum"),
    )
    seconds = frame_from_values(
        Assignment.objects.filter(item__study=study, item__kind=Item.Kind.NORMAL, status=Assignment.Status.COMPLETED,
                                  seconds__isnull=False)
        .order_by().values_list("annotator__username", "seconds"),
        ["rater", "seconds"],
    )
    median_seconds = seconds.groupby("rater")["seconds"].median() if len(seconds) else pd.Series(dtype=float)

    agreement = (per_rater["agrees"] / per_rater["compared"]).where(per_rater["compared"] > 0)
    # Tukey's lower fence over the annotators: an outlier among peers, needs a few peers to mean anything.
    known = agreement.dropna()
    fence = None
    if len(known) >= 4:
        q1, q3 = np.percentile(known, [25, 75])
        fence = q1 - 1.5 * (q3 - q1)

    qc = annotator_quality_control(study=study)
    rows = []
    for rater, row in per_rater.iterrows():
        agree = agreement.get(rater)
        agree = None if pd.isna(agree) else float(agree)
        med = median_seconds.get(rater)
        med = None if med is None or pd.isna(med) else float(med)
        decisive = int(row["decisive_shown"])
        left_share = int(row["left"]) / decisive if decisive else None
        flags = []
        if agree is not None and (
            (fence is not None and agree < fence)
            or (agree <= CHANCE_AGREEMENT and row["compared"] >= MIN_COMPARED_FOR_CHANCE_FLAG)
        ):
            flags.append("low_agreement")
        if med is not None and med < study.too_fast_seconds:
            flags.append("too_fast")
        if decisive and binomtest(int(row["left"]), decisive, 0.5).pvalue < POSITION_BIAS_P:
            flags.append("position_bias")
        rows.append({
            "rater": str(rater),
            "ratings": int(row["ratings"]),
            "items": int(row["items"]),
            "agreement_loo": agree,
            "compared": int(row["compared"]),
            "mean_confidence": float(row["mean_confidence"]),
            "median_seconds": med,
            "left_share": left_share,
            "quality_control": dict(qc.get(str(rater), QUALITY_CONTROL_NONE)),
            "flags": flags,
        })
    return rows
