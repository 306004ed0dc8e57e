"""clean_response removes only what it is sure of (issue 16): whole quote pairs, role tags, chatter.

The old rule stripped the first and last character whenever both were quotes, so the reply
"Hi," I said, "nice to meet you." was stored as Hi," I said, "nice to meet you. ; a line
starting "Note:" was cut wherever it stood, and "Okay, my answer is:" was taken for a preamble.
"""
import pytest

from modeling.llm.postprocess import (
    clean_generic_response,
    clean_response,
    strip_outer_quotes,
)


@pytest.mark.parametrize("reply", [
    '"Hi," I said, "nice to meet you."',
    "“Hi,” I said, “nice to meet you.”",
    "'Fine,' she said, 'let's go.'",
    '"I love it" is what she said.',
    'He said "yes".',
    "Note: I can only meet on Tuesdays, is that okay?",
    "Maria: that's what my sister always says.",
    "Reminder: bring your umbrella tomorrow!",
    "Okay, my answer is: yes, I'll come.",
    "Pros: it is cheap. Cons: it is far.",
])
def test_ordinary_replies_stay_intact(reply):
    assert clean_response(reply) == reply


@pytest.mark.parametrize("raw,expected", [
    ('"She said \'hi\' to me."', "She said 'hi' to me."),
    ("'I don't know, it's late.'", "I don't know, it's late."),
    ("«Bonjour, ça va ?»", "Bonjour, ça va ?"),
    ("“That sounds like a plan.”", "That sounds like a plan."),
    ('Agent: "Hi," I said, "nice to meet you."', '"Hi," I said, "nice to meet you."'),
])
def test_a_quote_pair_around_the_whole_reply_is_removed(raw, expected):
    assert clean_response(raw) == expected


def test_strip_outer_quotes_needs_one_pair_enclosing_everything():
    assert strip_outer_quotes('"a" and "b"') == '"a" and "b"'
    assert strip_outer_quotes("“a” and “b”") == "“a” and “b”"
    assert strip_outer_quotes('"a and b"') == "a and b"
    assert strip_outer_quotes("'Yes,' she said, 'we're in.'") == "'Yes,' she said, 'we're in.'"
    assert strip_outer_quotes('"') == '"'


@pytest.mark.parametrize("raw,expected", [
    # A note about the task is chatter; a note that is part of the reply stays.
    ("I love hiking.\nNote: this response avoids the persona.", "I love hiking."),
    ("I love hiking.\nNote: the trails close at dusk, so go early.",
     "I love hiking. Note: the trails close at dusk, so go early."),
    ("That sounds fun! (Note: I kept the reply neutral.)", "That sounds fun!"),
    ("That sounds fun! (Note: bring water.)", "That sounds fun! (Note: bring water.)"),
    ("**Explanation:** this is generic.", "**Explanation:** this is generic."),
    ("Sounds good.\n**Explanation:** The response is generic because it ignores the persona.", "Sounds good."),
    # A preamble must say "here is" and name the reply.
    ("Sure! Here's a rewritten response: I love it.", "I love it."),
    ("Here is my answer:\nI am a teacher.", "I am a teacher."),
    # Role tags come off as whole tags; a name with a colon is not a role.
    ("Assistant: Maria: that's my sister's name.", "Maria: that's my sister's name."),
    ("[Agent] I see.\nUser 2: okay", "I see."),
])
def test_chatter_and_role_tags_go_as_whole_units(raw, expected):
    assert clean_response(raw) == expected


def test_generic_response_cleanup_cuts_a_loop_to_its_first_occurrence():
    # The demo's R_G: one sentence six times, the last cut off by max_new_tokens.
    raw = "Agent: " + "I'm sorry to hear that, it must be hard. " * 6 + "I'm sorry to"
    assert clean_generic_response(raw) == "I'm sorry to hear that, it must be hard."
    assert clean_response(raw).count("I'm sorry to hear that") == 6  # ICL/GRAG keep it (flagged, not cut)
    assert clean_generic_response("Hello! How are you today?") == "Hello! How are you today?"
