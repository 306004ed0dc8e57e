"""EmpatheticDialogues CSV (Rashkin et al. 2019): train.csv, valid.csv, test.csv of the release.

Header ``conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags``; one row
per utterance. Commas inside text are written ``_comma_``, so a row is split on plain commas
(as the authors' and ParlAI's loaders do), not read as quoted CSV; a row may carry extra
trailing fields (the test split's candidate lists), which are ignored.

The fields the importer does not keep are still checked, because a row whose ``prompt`` holds an
unescaped comma shifts every later column by one and would otherwise be read with a speaker id
as its utterance: ``speaker_idx`` must be an integer, ``selfeval`` empty or ``5|5|5_2|2|5``-shaped,
``context`` and ``prompt`` the same on every row of a conversation, ``utterance_idx`` 1, 2, 3, ...
without gaps, and the odd and even utterances must come from two different speakers (the roles
below are assigned by that alternation).

Utterance 1 is the speaker, who felt the emotion and opens; the listener answers. The listener
is the agent, so utterance 2, 4, ... are agent turns, each with history. The paper treats the
emotion label as the persona ("simple persona attributes that reflect the speaking style",
section 4.1): the agent persona is ``emotion: <label>, situation: <prompt>``.
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

REQUIRED = ["conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance"]
# The release's self-evaluation: "5|5|5_2|2|5" (speaker's and listener's ratings), or empty.
SELFEVAL = re.compile(r"^\d+(\|\d+)*(_\d+(\|\d+)*)?$")
SHIFTED = "an unescaped comma in an earlier field (the prompt?) shifts the columns; write commas as _comma_"


def unescape(text: str) -> str:
    return text.replace("_comma_", ",").strip()


def parse(path: str | Path, *, limit: int | None = None) -> ParseResult:
    """Parse one EmpatheticDialogues CSV split (see the module docstring)."""
    path = Path(path)
    lines = read_text(path).split("\n")
    header = [name.strip() for name in lines[0].split(",")]
    missing = [column for column in REQUIRED if column not in header]
    if missing:
        raise ImportFileError(
            path, 1, f"missing column(s) {', '.join(repr(c) for c in missing)}; the header has {header}"
        )
    index = {name: header.index(name) for name in REQUIRED}
    needed = max(index.values()) + 1
    result = ParseResult(conversations=[], source_file=path.name, split=split_from_name(path.name))
    by_id: dict[str, ParsedConversation] = {}
    last_idx: dict[str, int] = {}
    first_row: dict[str, tuple[int, str, str]] = {}  # conv_id -> (line, context, prompt) of its first row
    speakers: dict[str, dict[int, int]] = {}  # conv_id -> {utterance_idx parity: speaker_idx}
    current: str | None = None
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        fields = raw.rstrip("\r").split(",")
        if len(fields) < needed:
            raise ImportFileError(
                path, number, f"row has {len(fields)} field(s), at least {needed} needed ({', '.join(REQUIRED)}); is it truncated?"
            )
        conv_id = fields[index["conv_id"]].strip()
        if not conv_id:
            raise ImportFileError(path, number, "empty conv_id")
        try:
            utterance_idx = int(fields[index["utterance_idx"]])
        except ValueError:
            raise ImportFileError(
                path, number, f"utterance_idx must be an integer, got {fields[index['utterance_idx']]!r}"
            ) from None
        speaker = _checked_skipped_fields(path, number, fields, header)
        conversation = by_id.get(conv_id)
        if conversation is None:
            if limit is not None and len(by_id) >= limit:
                break
            context = unescape(fields[index["context"]])
            prompt = unescape(fields[index["prompt"]])
            conversation = by_id[conv_id] = ParsedConversation(
                source_id=conv_id, source_line=number, agent_persona=f"emotion: {context}, situation: {prompt}",
                user_persona="", turns=[], meta={"emotion": context},
            )
            first_row[conv_id] = (number, fields[index["context"]], fields[index["prompt"]])
            speakers[conv_id] = {}
        elif conv_id != current:
            raise ImportFileError(path, number, f"rows of conversation {conv_id} are not together (seen before line {number})")
        else:
            line, context, prompt = first_row[conv_id]
            for column, value in (("context", context), ("prompt", prompt)):
                if fields[index[column]] != value:
                    raise ImportFileError(
                        path, number,
                        f"{column} {fields[index[column]]!r} differs from {value!r} on line {line}, the first row of "
                        f"{conv_id}; {SHIFTED}",
                    )
        current = conv_id
        expected = last_idx.get(conv_id, 0) + 1
        if utterance_idx != expected:
            raise ImportFileError(
                path, number, f"utterance_idx {utterance_idx} of {conv_id} should be {expected} (they count 1, 2, 3, ...)"
            )
        last_idx[conv_id] = utterance_idx
        # Roles come from the parity of utterance_idx: the two parities must be two speakers.
        parity = utterance_idx % 2
        known = speakers[conv_id]
        if known.setdefault(parity, speaker) != speaker or known.get(1 - parity) == speaker:
            raise ImportFileError(
                path, number,
                f"speaker_idx {speaker} breaks the alternation of {conv_id}'s two speakers "
                f"(odd utterances: {known.get(1)}, even: {known.get(0)})",
            )
        text = unescape(fields[index["utterance"]])
        if not text:
            result.skipped_lines += 1
            continue
        role = USER if utterance_idx % 2 == 1 else AGENT
        conversation.turns.append(Turn(role, text, number))
    for conversation in by_id.values():
        conversation.turns, merged = merge_same_role(conversation.turns)
        result.merged_lines += merged
    result.conversations = list(by_id.values())
    return result


def _checked_skipped_fields(path: Path, number: int, fields: list[str], header: list[str]) -> int:
    """Check the fields the importer does not keep (a shifted row fails here); return speaker_idx."""
    raw = fields[header.index("speaker_idx")]
    try:
        speaker = int(raw)
    except ValueError:
        raise ImportFileError(path, number, f"speaker_idx must be an integer, got {raw!r}; {SHIFTED}") from None
    if "selfeval" in header:
        selfeval = fields[header.index("selfeval")].strip() if len(fields) > header.index("selfeval") else ""
        if selfeval and not SELFEVAL.match(selfeval):
            raise ImportFileError(
                path, number, f"selfeval must be empty or like '5|5|5_2|2|5', got {selfeval[:60]!r}; {SHIFTED}"
            )
    return speaker
