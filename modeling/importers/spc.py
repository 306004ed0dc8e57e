"""Synthetic-Persona-Chat CSV (Jandaghi et al. 2024): one conversation per record.

Columns ``user 1 personas``, ``user 2 personas`` (one sentence per line) and ``Best Generated
Conversation`` (one utterance per line). User 2 is the agent and User 1 the user, who opens.
The generated text is not clean, so each non-blank line of a conversation is one of:

- a speaker line, ``User 1: ...``, also with markdown around the prefix (``* * User 1: * * Hi``,
  ``*User 2:* Me too``, ``* User 1: Bye! *``): a new utterance, or, when the same speaker
  spoke last, merged into that utterance (counted in ``merged_lines``). An action before the
  speech is dropped (``User 1: (goes to the living room) Wow!``); a speaker line that is only
  an action (``User 1: (arrives at user 2's house)``) is skipped;
- a continuation of the previous utterance: a list item (``1. Preheat...``, ``* 1 cup of...``)
  or any line while the utterance is in "list mode" (it ended with ``:`` as in "Here's the
  recipe:" or already has continuation lines): merged with a newline (``merged_lines``);
- anything else is a stage direction or junk and is skipped (``skipped_lines``): ``[Later]``,
  ``(The next day)``, ``* At the beach *``, ``* * *``, ``The next day:``, ``Saturday``,
  ``End of conversation.``, a persona dump like ``User 1 Profiles: {...``.

Skipping rather than merging an unknown line is deliberate: a lost stage direction costs
nothing, a narration glued into a reference response R_P would be scored as if the agent said it.

The persona columns are not parsed line by line, but they are checked, so that a record whose
cells are shifted (a conversation in a persona column, a persona left empty) fails with its
line instead of being imported with the wrong persona: a persona cell must not hold a speaker
line (``User 1: ...``), and both persona cells must be non-empty when the conversation is.

One record of the test split (row 320) has no speaker prefixes at all, just blank-separated
lines whose content alternates ("I'm [user 1 name]" / "I'm [user 2 name]"). A conversation
without a single speaker line is read as alternating User 1 / User 2 utterances, one per line.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import AGENT, USER, ImportFileError, ParsedConversation, ParseResult, Turn, read_csv, split_from_name

USER_PERSONA = "user 1 personas"
AGENT_PERSONA = "user 2 personas"
CONVERSATION = "Best Generated Conversation"

# "User 1:" with optional markdown (*, _, #, >, -) before the name and around the colon.
SPEAKER = re.compile(r"^[\s*_#>\-]*user\s*([12])\s*[*_]*\s*:\s*[*_]*\s*", re.IGNORECASE)
TRAILING_MARKUP = re.compile(r"\s+[*_]+$")
LIST_ITEM = re.compile(r"^(\d+[.)]|[*\u2022\-])\s+\S")
ONLY_MARKUP = re.compile(r"^[\s*_\-=#~.]+$")
# An action before the speech, "User 1: (goes to the living room) Wow!", but not a
# placeholder such as "(name), nice to meet you!".
LEADING_ACTION = re.compile(r"^(\([^()]*\)|\[[^\[\]]*\])(\s+|$)")


def is_stage_direction(line: str) -> bool:
    """Lines that are scene-setting, never speech: bracketed, parenthesised, wrapped in
    asterisks, or nothing but markup (``* * *``)."""
    return (
        line[0] in "[(" or ONLY_MARKUP.match(line) is not None or (len(line) > 2 and line[0] == "*" and line[-1] == "*")
    )


def parse_conversation(text: str, first_line: int) -> tuple[list[Turn], int, int, bool]:
    """Turns of one ``Best Generated Conversation`` cell that starts on ``first_line``.

    Returns (turns, skipped_lines, merged_lines, speakers_inferred).
    """
    lines = text.split("\n")
    if not any(SPEAKER.match(line) for line in lines):
        return _alternating(lines, first_line)
    turns: list[Turn] = []
    skipped = merged = 0
    list_mode = False  # the current utterance is a list or ended with ":"
    for offset, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        number = first_line + offset
        match = SPEAKER.match(line)
        if match:
            role = AGENT if match.group(1) == "2" else USER
            utterance = LEADING_ACTION.sub("", TRAILING_MARKUP.sub("", line[match.end():]).strip())
            if not utterance:  # only an action: "User 1: (arrives at user 2's house)"
                skipped += 1
                continue
            if turns and turns[-1].role == role:
                last = turns[-1]
                turns[-1] = Turn(role, f"{last.text} {utterance}", last.line)
                merged += 1
            else:
                turns.append(Turn(role, utterance, number))
            list_mode = utterance.endswith(":")
            continue
        if turns and not is_stage_direction(line) and (list_mode or LIST_ITEM.match(line)):
            last = turns[-1]
            turns[-1] = Turn(last.role, f"{last.text}\n{line}", last.line)
            merged += 1
            list_mode = True
            continue
        skipped += 1
        list_mode = False
    return turns, skipped, merged, False


def _alternating(lines: list[str], first_line: int) -> tuple[list[Turn], int, int, bool]:
    turns: list[Turn] = []
    skipped = 0
    for offset, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if is_stage_direction(line):
            skipped += 1
            continue
        role = USER if len(turns) % 2 == 0 else AGENT
        turns.append(Turn(role, line, first_line + offset))
    return turns, skipped, 0, True


def parse(path: str | Path, *, limit: int | None = None) -> ParseResult:
    """Parse a Synthetic-Persona-Chat CSV (see the module docstring for the line rules)."""
    path = Path(path)
    header, rows = read_csv(path, [USER_PERSONA, AGENT_PERSONA, CONVERSATION])
    result = ParseResult(conversations=[], source_file=path.name, split=split_from_name(path.name))
    for number, row in enumerate(rows, start=1):
        if limit is not None and number > limit:
            break
        column = header[CONVERSATION]
        text = row.fields[column]
        _check_personas(path, row, header, has_conversation=bool(text.strip()))
        if not text.strip():
            # Kept (it is one of the release's conversations) but yields no Sample.
            result.notes.append(f"line {row.line}: record {number} has an empty conversation")
            turns, skipped, merged, inferred = [], 0, 0, False
        else:
            turns, skipped, merged, inferred = parse_conversation(text, row.field_lines[column])
        result.skipped_lines += skipped
        result.merged_lines += merged
        if inferred:
            result.notes.append(
                f"line {row.line}: no speaker prefixes; read as alternating User 1 / User 2 lines"
            )
        result.conversations.append(
            ParsedConversation(
                source_id=f"{path.stem}:{number}",
                source_line=row.line,
                agent_persona=_persona(row.get(header, AGENT_PERSONA)),
                user_persona=_persona(row.get(header, USER_PERSONA)),
                turns=turns,
                meta={"speakers_inferred": True} if inferred else {},
            )
        )
    return result


def _check_personas(path: Path, row, header: dict[str, int], *, has_conversation: bool) -> None:
    """Cross-check the persona cells of one record (see the module docstring)."""
    for name in (USER_PERSONA, AGENT_PERSONA):
        cell = row.get(header, name)
        if has_conversation and not cell.strip():
            raise ImportFileError(
                path, row.line, f"column {name!r} is empty while the record has a conversation; are the columns shifted?"
            )
        for offset, line in enumerate(cell.split("\n")):
            if SPEAKER.match(line.strip()):
                raise ImportFileError(
                    path, row.field_lines[header[name]] + offset,
                    f"column {name!r} holds a conversation line ({line.strip()[:60]!r}); are the columns shifted?",
                )


def _persona(text: str) -> str:
    return "\n".join(line.strip() for line in text.split("\n") if line.strip())
