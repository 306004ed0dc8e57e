"""ConvAI2 / PersonaChat in ParlAI's text format (Zhang et al. 2018; Dinan et al. 2019).

Every line starts with its number inside the dialogue; number 1 starts a new dialogue.
``your persona: ...`` lines are the agent's persona (``partner's persona: ...`` the user's, in
the ``both_`` variants). Every other line is ``partner utterance<TAB>agent reply`` with
optional further tab-separated fields (reward, candidates ``a|b|c``) that are ignored. The
partner opens, so every agent reply has history; a partner line ``__SILENCE__`` (the agent
opening) is left out of the history.

The fields not kept are still checked, so that a garbled line fails with its number: persona
lines come before the dialogue's first utterance line; ``__SILENCE__`` only on that first line;
a third field (reward) is a number or empty; a fourth (candidates) holds the agent reply among
its ``|``-separated candidates, as ParlAI's label candidates always do; there is no fifth.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import (
    AGENT,
    USER,
    ImportFileError,
    ParsedConversation,
    ParseResult,
    Turn,
    merge_same_role,
    read_text,
    split_from_name,
)

NUMBERED = re.compile(r"^(\d+) (.*)$")
SILENCE = "__SILENCE__"


def parse(path: str | Path, *, limit: int | None = None) -> ParseResult:
    """Parse a ParlAI ConvAI2 text file (see the module docstring)."""
    path = Path(path)
    lines = read_text(path).split("\n")
    result = ParseResult(conversations=[], source_file=path.name, split=split_from_name(path.name))
    conversation: ParsedConversation | None = None
    agent_persona: list[str] = []
    user_persona: list[str] = []
    previous = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        match = NUMBERED.match(line)
        if not match:
            raise ImportFileError(path, number, "line does not start with its number in the dialogue ('1 your persona: ...')")
        index, body = int(match.group(1)), match.group(2)
        if index == 1 or conversation is None:
            if index != 1:
                raise ImportFileError(path, number, f"the first dialogue starts at number {index}, expected 1")
            if conversation is not None:
                _finish(conversation, agent_persona, user_persona, result)
            if limit is not None and len(result.conversations) >= limit:
                conversation = None
                break
            conversation = ParsedConversation(
                source_id=f"{path.stem}:{len(result.conversations) + 1}", source_line=number,
                agent_persona="", user_persona="", turns=[],
            )
            agent_persona, user_persona = [], []
        elif index != previous + 1:
            raise ImportFileError(path, number, f"line number {index} does not follow {previous} in this dialogue")
        previous = index
        persona_line = body.startswith(("your persona:", "partner's persona:"))
        if persona_line and conversation.turns:
            raise ImportFileError(
                path, number, "a persona line after the dialogue's utterances; persona lines come first (a lost line number?)"
            )
        if body.startswith("your persona:"):
            agent_persona.append(body[len("your persona:"):].strip())
            continue
        if body.startswith("partner's persona:"):
            user_persona.append(body[len("partner's persona:"):].strip())
            continue
        fields = body.split("\t")
        if len(fields) < 2:
            raise ImportFileError(path, number, "expected 'partner utterance<TAB>agent reply', found no tab")
        partner, reply = fields[0].strip(), fields[1].strip()
        if not reply:
            raise ImportFileError(path, number, "empty agent reply")
        _check_skipped_fields(path, number, fields, first_exchange=not conversation.turns)
        if partner and partner != SILENCE:
            conversation.turns.append(Turn(USER, partner, number))
        conversation.turns.append(Turn(AGENT, reply, number))
    if conversation is not None:
        _finish(conversation, agent_persona, user_persona, result)
    return result


def _check_skipped_fields(path: Path, number: int, fields: list[str], *, first_exchange: bool) -> None:
    """Cross-check the fields the importer does not keep (see the module docstring)."""
    if fields[0].strip() == SILENCE and not first_exchange:
        raise ImportFileError(path, number, f"{SILENCE} after the dialogue's first line: the partner cannot be silent mid-dialogue")
    if len(fields) > 4:
        raise ImportFileError(
            path, number, f"{len(fields)} tab-separated fields, at most 4 (text, reply, reward, candidates); a stray tab?"
        )
    if len(fields) >= 3 and fields[2].strip():
        try:
            float(fields[2])
        except ValueError:
            raise ImportFileError(path, number, f"the third field (reward) must be a number or empty, got {fields[2][:60]!r}") from None
    if len(fields) == 4 and fields[3].strip():
        candidates = [c.strip() for c in fields[3].split("|")]
        if fields[1].strip() not in candidates:
            raise ImportFileError(
                path, number, f"the agent reply {fields[1].strip()[:60]!r} is not among the line's {len(candidates)} candidates"
            )


def _finish(conversation: ParsedConversation, agent: list[str], user: list[str], result: ParseResult) -> None:
    conversation.agent_persona = "\n".join(agent)
    conversation.user_persona = "\n".join(user)
    conversation.turns, merged = merge_same_role(conversation.turns)
    result.merged_lines += merged
    result.conversations.append(conversation)
