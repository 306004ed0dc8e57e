"""Turn a raw LLM completion into one response (section 3.1: R_G is a single agent turn).

Instruct models wrap the answer: a role tag ("<agent>", "Agent:", "Response:"), a preamble
("Sure! Here's a response:"), quotes around the whole reply, a continuation of the dialogue with
the user's next line, or a note about the reply ("Note: this response is neutral."). Keep the
first response only, without any of that.

Every rule removes a whole unit it is sure of and nothing else: a quote pair only when it
encloses the whole reply (``"Hi," I said, "nice to meet you."`` keeps its quotes), a role tag
only from the fixed list of role names (a person's name and a colon stays), a note only when it
talks about the reply or the task (an ordinary "Note: the trails close at dusk." stays).
Plain Python, no Django.
"""
from __future__ import annotations

import re

from ..text import cut_loop

# A speaker label at the start of a line: <agent>, [Agent], Agent:, **Agent:**, Assistant:, User 2: ...
_ROLE = r"(?:agent|assistant|user|persuader|persuadee|listener|speaker|bot|system|response|rewritten response|generic response|user\s*\d)"
_LEADING_TAG = re.compile(
    rf"^\s*(?:\*\*|\*)?\s*(?:<\s*{_ROLE}\s*>|\[\s*{_ROLE}\s*\]|{_ROLE}\s*:)\s*(?:\*\*|\*)?\s*", re.IGNORECASE
)
# A line where the other side speaks or the prompt's own sections are echoed: cut there.
_NEXT_SPEAKER = re.compile(
    r"^\s*(?:\*\*|\*)?\s*(?:<\s*/?\s*(?:user|agent|assistant)\s*>|(?:user|human|persuadee|user\s*1|"
    r"last user utterance|conversation history|persona|example\s*\d*)\s*:)",
    re.IGNORECASE,
)
# A note or explanation (a line of its own, or in brackets) is chatter only when it talks about
# the reply or the task; "Note: the museum closes at 5." is part of a reply.
_NOTE_START = r"(?:\*\*|\*)?\s*(?:note|explanation|rationale|reasoning)\s*(?:\*\*|\*)?\s*:"
_ABOUT_THE_REPLY = re.compile(
    r"\b(?:response|reply|replies|answer|rewrit\w*|rephras\w*|persona|personali[sz]\w*|neutral|generic|prompt|"
    r"task|instruction\w*|tone|the user|the agent|the speaker|as requested|i (?:have |'ve )?(?:kept|made|avoided|"
    r"removed|tried|focused|chose|used|included))\b",
    re.IGNORECASE,
)
_NOTE_LINE = re.compile(rf"^\s*{_NOTE_START}", re.IGNORECASE)
_BRACKETED_NOTE = re.compile(rf"\s*[(\[]\s*{_NOTE_START}[^()\[\]]*[)\]]\s*$", re.IGNORECASE)
# "Sure! Here's a neutral response:" - a preamble that names what follows. It must say "here is"
# and name a reply; "Okay, my answer is: yes" is a reply, not a preamble.
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly|of course|absolutely)\s*[!,.]?\s*)?here(?:'s|’s| is| are)\b"
    r"[^\n:]{0,80}\b(?:response|reply|answer|version|rewrite)s?\b[^\n:]{0,40}:\s*",
    re.IGNORECASE,
)
_CHAT_MARKERS = re.compile(r"<\|[^|>]*\|>|</?s>")
# Opening quote -> its closing quote. A straight quote closes itself.
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "„": "“", "「": "」", "『": "』", "`": "`"}


def strip_outer_quotes(text: str) -> str:
    """``text`` without a quote pair that encloses all of it, else unchanged.

    The first character must open a quote, the last close it, and no quote of that kind may
    close (or open) in between: in ``"Hi," I said, "nice to meet you."`` the first quote closes
    after ``Hi,``, so nothing is stripped. An apostrophe inside a word (don't) is not a quote.
    """
    if len(text) < 2:
        return text
    opener, closer = text[0], text[-1]
    if _QUOTE_PAIRS.get(opener) != closer:
        return text
    inner = text[1:-1]
    if opener in ("'", "‘"):
        # A quote mark inside counts unless it is an apostrophe between two letters.
        marks = {"'", "‘", "’"}
        for i, ch in enumerate(inner):
            if ch in marks and not (0 < i < len(inner) - 1 and inner[i - 1].isalpha() and inner[i + 1].isalpha()):
                return text
    elif opener in inner or closer in inner:
        return text
    return inner.strip()


def _is_chatter_note(line: str) -> bool:
    return bool(_NOTE_LINE.match(line)) and bool(_ABOUT_THE_REPLY.search(line))


def clean_response(raw: str) -> str:
    """The first response in ``raw``, without tags, preamble, enclosing quotes or what follows it.

    Example: 'Sure! Here\'s a response:\\n\\n"That sounds fun."\\nUser: yes' -> 'That sounds fun.'
    """
    text = _CHAT_MARKERS.sub(" ", raw or "").replace("\r\n", "\n").strip()
    text = _PREAMBLE.sub("", text, count=1).strip()
    text = _LEADING_TAG.sub("", text, count=1).strip()
    lines = []
    for number, line in enumerate(text.split("\n")):
        if number and _NEXT_SPEAKER.match(line):
            break
        if number and _LEADING_TAG.match(line) and lines:  # the agent "speaks again": a second response
            break
        if lines and _is_chatter_note(line):
            break
        if not line.strip():
            if lines:  # a blank line ends the response; what follows is commentary
                break
            continue
        lines.append(line.strip())
    text = " ".join(lines)
    text = re.sub(r"\s+", " ", text).strip()
    note = _BRACKETED_NOTE.search(text)
    if note and note.start() > 0 and _ABOUT_THE_REPLY.search(note.group(0)):
        text = text[:note.start()].rstrip()
    text = strip_outer_quotes(text)
    # An inline role switch ("... <user> ...") means the model went on with the other side.
    text = re.split(r"\s*<\s*/?\s*(?:user|agent)\s*>\s*", text, maxsplit=1, flags=re.IGNORECASE)[0].strip()
    return text


def clean_generic_response(raw: str) -> str:
    """A generic response R_G from a raw completion: clean_response, then a repetition loop cut.

    R_G is an input (to GRAG and to annotators), not a system under evaluation, so a loop is
    cut to its first occurrence (modeling.text.cut_loop) instead of being kept; the flags in
    the sample's generic_meta still record that the generation looped. ICL and GRAG outputs are
    evaluated as generated and only flagged.
    """
    return cut_loop(clean_response(raw))
