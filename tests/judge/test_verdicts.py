"""Verdict mapping, order canonicalisation, flipped verdicts and prompts: no model needed."""
import pytest

from judge.devdata import spc_turns
from judge.prompts import (
    PROMPT_V1,
    PROMPT_V2,
    UnknownPromptVersion,
    prompt_messages,
    prompt_template,
    responses_in_order,
)
from judge.scoring import (
    CONFIDENCE_THRESHOLDS,
    Score,
    canonical_choice,
    canonical_probabilities,
    common_prefix_length,
    confidence_from_probability,
    pair_verdict,
)


@pytest.mark.parametrize(
    "p, expected",
    [(1 / 3, 1), (0.4499, 1), (0.45, 2), (0.5999, 2), (0.6, 3), (0.7499, 3), (0.75, 4), (0.8999, 4), (0.9, 5), (1.0, 5)],
)
def test_confidence_follows_the_documented_thresholds(p, expected):
    assert CONFIDENCE_THRESHOLDS == (0.45, 0.6, 0.75, 0.9)
    assert confidence_from_probability(p) == expected


@pytest.mark.parametrize("p", [-0.1, 1.01, float("nan")])
def test_confidence_refuses_what_is_not_a_probability(p):
    with pytest.raises(ValueError, match="probability"):
        confidence_from_probability(p)


def test_a_score_chooses_the_most_probable_option_and_a_failure_has_no_choice():
    score = Score({"A": 0.2, "B": 0.7, "S": 0.1})
    assert (score.choice, score.confidence, score.failed) == ("B", 3, False)
    failed = Score(None, error="the prompt has 9000 tokens")
    assert failed.failed and failed.choice is None and failed.confidence is None


@pytest.mark.parametrize(
    "letter, baseline_side, expected",
    [("A", "A", "baseline"), ("B", "A", "challenger"), ("A", "B", "challenger"), ("B", "B", "baseline"),
     ("S", "A", "similar"), ("S", "B", "similar")],
)
def test_letters_map_back_to_the_systems_by_the_side_the_baseline_was_on(letter, baseline_side, expected):
    assert canonical_choice(letter, baseline_side=baseline_side) == expected


def test_probabilities_map_back_to_the_systems():
    shown = {"A": 0.6, "B": 0.3, "S": 0.1}
    assert canonical_probabilities(shown, baseline_side="A") == {"baseline": 0.6, "challenger": 0.3, "similar": 0.1}
    assert canonical_probabilities(shown, baseline_side="B") == {"baseline": 0.3, "challenger": 0.6, "similar": 0.1}


def test_a_verdict_that_holds_in_both_orders_stands_with_the_mean_probability():
    # Challenger preferred whichever side it was shown on: B first, then A.
    verdict = pair_verdict(baseline_as_a={"A": 0.1, "B": 0.8, "S": 0.1},
                           baseline_as_b={"A": 0.9, "B": 0.05, "S": 0.05})
    assert verdict.choice == "challenger" and not verdict.flipped
    assert verdict.probabilities["challenger"] == pytest.approx(0.85)
    assert verdict.confidence == 4
    assert verdict.orders == {"A": "challenger", "B": "challenger"}


def test_a_verdict_that_follows_the_position_becomes_similar_and_is_flagged():
    # "A" both times: the judge prefers the first position, not a response.
    verdict = pair_verdict(baseline_as_a={"A": 0.95, "B": 0.03, "S": 0.02},
                           baseline_as_b={"A": 0.95, "B": 0.03, "S": 0.02})
    # Its confidence is what the judge said (5 in both orders), not a value from the study's settings.
    assert verdict.choice == "similar" and verdict.flipped and verdict.confidence == 5
    assert verdict.orders == {"A": "baseline", "B": "challenger"}
    # A change between a preference and "similar" is a change too.
    half = pair_verdict(baseline_as_a={"A": 0.7, "B": 0.1, "S": 0.2},
                        baseline_as_b={"A": 0.1, "B": 0.2, "S": 0.7})
    assert (half.choice, half.flipped, half.confidence) == ("similar", True, 3)


def test_swapping_the_responses_gives_exactly_the_other_orders_prompt():
    context = dict(template=PROMPT_V1, persona="I have a turtle named timothy.",
                   history=[{"role": "user", "text": "Hi!"}], generic_response="Hello there.", question="Which is better?")
    baseline, challenger = "I love my turtle Timothy.", "Hello, how are you?"
    a, b = responses_in_order(baseline=baseline, challenger=challenger, baseline_side="B")
    assert (a, b) == (challenger, baseline)
    swapped_input = responses_in_order(baseline=challenger, challenger=baseline, baseline_side="A")
    assert prompt_messages(**context, response_a=swapped_input[0], response_b=swapped_input[1]) == prompt_messages(
        **context, response_a=a, response_b=b
    )


def test_the_prompt_shows_what_annotators_see_and_omits_an_empty_generic_panel():
    messages = prompt_messages(template=PROMPT_V1, persona="I run a dog obedience school.",
                               history=[{"role": "user", "text": "Hi"}, {"role": "agent", "text": "Hello!"}],
                               generic_response="", response_a="first", response_b="second",
                               question="Which response makes more sense?")
    user = messages[-1]["content"]
    for shown in ("I run a dog obedience school.", "User: Hi", "Agent: Hello!", "[Response A]\nfirst",
                  "[Response B]\nsecond", "Which response makes more sense?"):
        assert shown in user
    assert "Generic response" not in user
    # The context shared by every question and order comes before what differs (prefix caching).
    assert user.index("dog obedience") < user.index("[Response A]") < user.index("[Question]")
    with_generic = prompt_messages(template=PROMPT_V1, persona="p", history=[], generic_response="A generic reply.",
                                   response_a="x", response_b="y", question="q")[-1]["content"]
    assert "[Generic response (written without the persona)]\nA generic reply." in with_generic


def test_an_unknown_prompt_version_names_the_known_ones():
    with pytest.raises(UnknownPromptVersion, match="known versions: v1"):
        prompt_template("v0")


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix_length([[1, 2], [1, 2]]) == 2
    assert common_prefix_length([[9], [1]]) == 0


def test_spc_turns_normalise_markdown_prefixes_and_drop_stage_directions():
    text = "* * User 1: * * Hello\n*User 2:* Me too\n[User 2 shows User 1 pictures of their work.]\n(The next day)\nUser 1: Bye."
    assert spc_turns(text) == [("user", "Hello"), ("agent", "Me too"), ("user", "Bye.")]


def test_prompts_of_one_order_cluster_behind_the_shared_prefix():
    from judge.scoring import MIN_SUBPREFIX_TOKENS, prefix_clusters

    shared = list(range(100, 120))
    order_a = shared + [1] * MIN_SUBPREFIX_TOKENS + [7]
    order_b = shared + [2] * MIN_SUBPREFIX_TOKENS + [7]
    prompts = [order_a + [q] for q in (11, 12)] + [order_b + [q] for q in (11, 12)] + [shared + [3, 9]]
    clusters = prefix_clusters(prompts, beyond=len(shared))
    assert sorted(sorted(c) for c in clusters) == [[0, 1], [2, 3], [4]]


def test_prompt_v2_lists_every_question_once_in_the_shared_context_and_asks_one_by_number():
    questions = ["Which makes more sense?", "Which is more accurate?", "Which adds more value?", "Which is balanced?"]
    fields = dict(template=PROMPT_V2, persona="I have a turtle.", history=[{"role": "user", "text": "Hi"}],
                  generic_response="Hello.", response_a="first", response_b="second", all_questions=questions)
    second = prompt_messages(**fields, question=questions[1])[-1]["content"]
    third = prompt_messages(**fields, question=questions[2])[-1]["content"]
    for n, q in enumerate(questions, 1):
        assert second.count(q) == 1 and f"{n}. {q}" in second
    # Everything up to the responses is shared by all questions and orders; prompts differ only at the end.
    assert second.index("[Questions]") < second.index("[Response A]") < second.index("Answer question 2")
    assert second.replace("question 2", "question 3") == third
    with pytest.raises(ValueError, match="all_questions"):
        prompt_messages(**{**fields, "all_questions": []}, question=questions[0])
