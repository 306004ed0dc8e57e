"""The one aggregation (issue 4): confidence filter, then a label held by at least 2 kept ratings.

Every expected value below is worked out by hand from the ratings written next to it.
"""
import pandas as pd
import pytest

from annotation.aggregation import (
    STATUS_CONFIDENCE,
    STATUS_NO_MAJORITY,
    STATUS_VALID,
    majority_vote,
    ratings_frame,
    study_aggregate,
)
from annotation.models import Item, Rating, Study
from tests.factories import ratings_create, study_create

B, C, S = "baseline", "challenger", "similar"


def label_of(votes: pd.DataFrame, question: str, study: Study, key: str):
    item_id = Item.objects.get(study=study, key=key).pk
    row = votes.loc[(question, item_id)]
    return row["label"], row["status"]


@pytest.mark.django_db
def test_hand_worked_majority_and_confidence_cases():
    study = study_create()
    ratings_create(study, [
        # plain majority: two of three say baseline (one of them at confidence 2 = the minimum, kept)
        ("majority", "ann", "q1", B, 5), ("majority", "bob", "q1", B, 2), ("majority", "cat", "q1", C, 4),
        # all disagree: no label, whatever the confidences
        ("disagree", "ann", "q1", B, 5), ("disagree", "bob", "q1", C, 5), ("disagree", "cat", "q1", S, 5),
        # the filter removes one of the two "similar" votes: 1 similar + 1 challenger kept, no label,
        # and it is the confidence filter that removed it (without it, similar had 2 of 3)
        ("filtered", "ann", "q1", S, 1), ("filtered", "bob", "q1", S, 4), ("filtered", "cat", "q1", C, 3),
        # unanimous but two of three below the minimum: one kept rating is not a majority
        ("unsure", "ann", "q1", C, 1), ("unsure", "bob", "q1", C, 1), ("unsure", "cat", "q1", C, 5),
        # only one rating so far: never a label
        ("single", "ann", "q1", C, 5),
    ])
    votes = study_aggregate(study=study).human
    assert label_of(votes, "q1", study, "majority") == (B, STATUS_VALID)
    assert label_of(votes, "q1", study, "disagree") == (None, STATUS_NO_MAJORITY)
    assert label_of(votes, "q1", study, "filtered") == (None, STATUS_CONFIDENCE)
    assert label_of(votes, "q1", study, "unsure") == (None, STATUS_CONFIDENCE)
    assert label_of(votes, "q1", study, "single") == (None, STATUS_NO_MAJORITY)
    summary = study_aggregate(study=study).summary()["q1"]
    assert summary == {"items": 5, "valid": 1, "distribution": {B: 1, C: 0, S: 0},
                       "dropped_confidence": 2, "dropped_no_majority": 2}
    # With the filter off (minimum 1) the filtered and the unsure items get their labels back.
    loose = study_aggregate(study=study, min_confidence=1)
    assert label_of(loose.human, "q1", study, "filtered") == (S, STATUS_VALID)
    assert label_of(loose.human, "q1", study, "unsure") == (C, STATUS_VALID)
    assert loose.summary()["q1"]["distribution"] == {B: 1, C: 1, S: 1}


@pytest.mark.django_db
def test_ties_after_filtering_give_no_label():
    study = study_create(overlap=5)
    ratings_create(study, [
        # 3 challenger vs 2 baseline, but one challenger is unsure: 2-2 after filtering, a tie, no label
        ("tie", "r1", "q2", B, 5), ("tie", "r2", "q2", B, 5), ("tie", "r3", "q2", C, 5), ("tie", "r4", "q2", C, 4),
        ("tie", "r5", "q2", C, 1),
        # 2-2 before filtering as well; the unsure baseline vote is dropped and challenger wins 2-1
        ("untie", "r1", "q2", B, 1), ("untie", "r2", "q2", B, 5), ("untie", "r3", "q2", C, 5), ("untie", "r4", "q2", C, 5),
    ])
    votes = study_aggregate(study=study).human
    assert label_of(votes, "q2", study, "tie") == (None, STATUS_CONFIDENCE)
    assert label_of(votes, "q2", study, "untie") == (C, STATUS_VALID)


@pytest.mark.django_db
def test_llm_rater_label_is_its_own_choice_after_the_filter_and_groups_stay_apart():
    study = study_create()
    llm = Rating.RaterKind.LLM
    ratings_create(study, [
        ("i1", "ann", "q1", B, 5), ("i1", "bob", "q1", B, 5), ("i1", "cat", "q1", C, 5),
        ("i1", "LLM-145", "q1", C, 4, llm),
        ("i2", "LLM-145", "q1", S, 1, llm),  # below the minimum: dropped
        ("i2", "LLM-2000", "q1", B, 3, llm),  # a rater with one rating: its label is that rating
    ])
    aggregate = study_aggregate(study=study)
    assert sorted(aggregate.llm) == ["LLM-145", "LLM-2000"]
    assert label_of(aggregate.llm["LLM-145"], "q1", study, "i1") == (C, STATUS_VALID)
    assert label_of(aggregate.llm["LLM-145"], "q1", study, "i2") == (None, STATUS_CONFIDENCE)
    assert label_of(aggregate.llm["LLM-2000"], "q1", study, "i2") == (B, STATUS_VALID)
    # LLM ratings never join the human majority: i2 has no human rating at all.
    assert list(aggregate.human.index) == [("q1", Item.objects.get(study=study, key="i1").pk)]
    assert label_of(aggregate.human, "q1", study, "i1") == (B, STATUS_VALID)


@pytest.mark.django_db
def test_only_current_ratings_of_normal_items_count():
    study = study_create()
    ratings_create(study, [("i1", "ann", "q1", C, 5), ("i1", "bob", "q1", C, 5), ("i1", "cat", "q1", B, 5)])
    # ann changed her mind: the old row stays, no longer current, and the label flips to no majority.
    old = Rating.objects.get(item__key="i1", rater="ann")
    old.is_current = False
    old.save()
    ratings_create(study, [("i1", "ann", "q1", S, 5)])
    # Gold and trap items measure annotators, not systems.
    ratings_create(study, [("gold", "ann", "q1", C, 5), ("gold", "bob", "q1", C, 5)], kind=Item.Kind.GOLD)
    ratings_create(study, [("trap", "ann", "q1", S, 5), ("trap", "bob", "q1", S, 5)], kind=Item.Kind.TRAP_IDENTICAL)
    summary = study_aggregate(study=study).summary()
    assert summary["q1"]["items"] == 1
    assert summary["q1"]["valid"] == 0 and summary["q1"]["dropped_no_majority"] == 1


@pytest.mark.django_db
def test_ratings_load_with_one_query(django_assert_num_queries):
    study = study_create()
    ratings_create(study, [(f"i{n}", r, q, B, 3) for n in range(20) for r in ("ann", "bob", "cat") for q in ("q1", "q2")])
    with django_assert_num_queries(1):
        aggregate = study_aggregate(study=study)
    assert aggregate.summary()["q2"]["valid"] == 20
    assert len(ratings_frame(study=study)) == 120


def test_majority_vote_on_a_frame_without_database():
    ratings = pd.DataFrame(
        [("q1", 1, B, 5), ("q1", 1, B, 5), ("q1", 1, S, 5),
         ("q1", 2, S, 2), ("q1", 2, S, 1), ("q1", 2, C, 3),
         ("q3", 1, C, 5)],
        columns=["question", "item_id", "choice", "confidence"],
    )
    votes = majority_vote(ratings=ratings, min_confidence=2)
    # label, its code, status, ratings, kept ratings
    assert votes.loc[("q1", 1)].tolist() == [B, 0, STATUS_VALID, 3, 3]
    assert votes.loc[("q1", 2)].tolist() == [None, -1, STATUS_CONFIDENCE, 3, 2]
    assert votes.loc[("q3", 1)].tolist() == [None, -1, STATUS_NO_MAJORITY, 1, 1]
    assert majority_vote(ratings=ratings, min_confidence=2, min_votes=1).loc[("q3", 1), "label"] == C
    assert majority_vote(ratings=ratings.iloc[:0], min_confidence=2).empty
    with pytest.raises(ValueError, match="unknown choice"):
        majority_vote(ratings=ratings.assign(choice="A"), min_confidence=2)


@pytest.mark.django_db
def test_min_confidence_outside_1_to_5_is_refused():
    study = study_create()
    with pytest.raises(ValueError, match="1 to 5"):
        study_aggregate(study=study, min_confidence=6)
