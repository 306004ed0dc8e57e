"""Turn a raw LLM completion into one response (section 3.1: R_G is a single agent turn).

Instruct models wrap the answer: a role tag ("<agent>", "Agent:", "Response:"), a preamble
("Sure! Here's a response:"), quotes, a continuation of the dialogue with the user's next line,
or a note after it ("Note: ..."). Keep the first response only, without any of that.
Plain Python, no Django.
"""
from __future__ import annotations

import re

# A speaker label at the start of a line: <agent>, [Agent], Agent:, **Agent:**, Assistant:, User 2: ...
_ROLE = r"(?:agent|assistant|user|persuader|persuadee|listener|speaker|bot|system|response|rewritten response|generic response|user\s*\d)"
_LEADING_TAG = re.compile(
    rf"^\s*(?:\*\*|\*)?\s*(?:<\s*{_ROLE}\s*>|\[\s*{_ROLE}\s*\]|{_ROLE}\s*:)\s*(?:\*\*|\*)?\s*", re.IGNORECASE
)
# A line where the other side (or a new section) starts: cut there.
_NEXT_SPEAKER = re.compile(
    r"^\s*(?:\*\*|\*)?\s*(?:<\s*/?\s*(?:user|agent|assistant)\s*>|(?:user|human|persuadee|user\s*1|"
    r"last user utterance|conversation history|persona|example\s*\d*|note|explanation)\s*:)",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^\s*(?:sure|okay|ok|certainly|of course|here(?:'s| is)|here are)\b[^\n:]{0,80}"
    r"(?:response|reply|answer|version|rewrite)[^\n:]{0,40}:\s*",
    re.IGNORECASE,
)
_CHAT_MARKERS = re.compile(r"<\|[^|>]*\|>|</?s>")
_QUOTES = "\"'“”‘’`"


def clean_response(raw: str) -> str:
    """The first response in ``raw``, without tags, preamble, quotes or what follows it."""
    text = _CHAT_MARKERS.sub(" ", raw or "").replace("\r\n", "\n").strip()
    text = _PREAMBLE.sub("", text, count=1).strip()
    text = _LEADING_TAG.sub("", text, count=1).strip()
    lines = []
    for number, line in enumerate(text.split("\n")):
        if number and _NEXT_SPEAKER.match(line):
            break
        if number and _LEADING_TAG.match(line) and lines:  # the agent "speaks again": a second response
            break
        if not line.strip():
            if lines:  # a blank line ends the response; what follows is commentary
                break
            continue
        lines.append(line.strip())
    text = " ".join(lines)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    # An inline role switch ("... <user> ...") means the model went on with the other side.
    text = re.split(r"\s*<\s*/?\s*(?:user|agent)\s*>\s*", text, maxsplit=1, flags=re.IGNORECASE)[0].strip()
    return text
