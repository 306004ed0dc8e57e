"""What every format parser returns, and the checks they share. No Django imports.

A parser reads one source file (or, for PFG, one folder) and returns a ``ParseResult``: plain
``ParsedConversation`` dataclasses whose turns keep the 1-based line each utterance came from,
so that every Sample can be traced back to its line. A file the parser cannot read raises
``ImportFileError`` naming the file and line; the service then writes nothing.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

USER = "user"
AGENT = "agent"
ROLES = (USER, AGENT)
SPLITS = ("train", "valid", "test")

# A physical line longer than this is not a dialogue file (a binary or a minified dump):
# refuse it early with a clear message instead of building huge rows.
MAX_LINE_CHARS = 100_000


class ImportFileError(ValueError):
    """A dataset file that cannot be imported: says which file, which line and what was wrong."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}, line {line}" if line else self.path
        super().__init__(f"{where}: {message}")


class Turn(NamedTuple):
    role: str  # "user" or "agent"
    text: str
    line: int  # 1-based line of the utterance in the source file
    generic: str = ""  # a generic response R_G shipped with the data (canonical jsonl only)


@dataclass
class ParsedConversation:
    source_id: str  # the conversation's id in the source (or file stem and row when it has none)
    source_line: int  # first line of the conversation in the source file
    agent_persona: str
    user_persona: str
    turns: list[Turn]
    split: str | None = None  # when the file itself says (jsonl); otherwise from the file name or seeded
    meta: dict = field(default_factory=dict)


@dataclass
class ParseResult:
    conversations: list[ParsedConversation]
    source_file: str  # the file name (lines refer to it)
    split: str | None = None  # the split the file name gives (e.g. ..._test.csv), if any
    skipped_lines: int = 0  # non-blank lines that are not utterances (stage directions, junk)
    merged_lines: int = 0  # lines joined to the previous utterance (continuations, same-speaker runs)
    notes: list[str] = field(default_factory=list)


def read_text(path: str | Path) -> str:
    """The file's text as UTF-8 (a BOM is allowed), after the checks every format shares."""
    path = Path(path)
    if not path.exists():
        raise ImportFileError(path, None, "no such file")
    if path.is_dir():
        raise ImportFileError(path, None, "is a folder, expected a file")
    data = path.read_bytes()
    if not data.strip():
        raise ImportFileError(path, 1, "the file is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            path, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ImportFileError(path, line, "contains NUL bytes: this is a binary file, not a dataset file")
    for number, line_text in enumerate(text.split("\n"), start=1):
        if len(line_text) > MAX_LINE_CHARS:
            raise ImportFileError(
                path, number, f"line is {len(line_text):,} characters long (limit {MAX_LINE_CHARS:,}); is this the right file?"
            )
    return text


class CsvRow(NamedTuple):
    line: int  # first physical line of the record
    fields: list[str]
    field_lines: list[int]  # the physical line each field starts on (multi-line quoted cells)

    def get(self, header: dict[str, int], column: str) -> str:
        return self.fields[header[column]]


# An error quotes at most this much of a header: enough to spot a misnamed column, too little to
# turn the importer into a reader of arbitrary files (security review, finding 4).
HEADER_SHOWN_COLUMNS = 20
HEADER_SHOWN_CHARS = 40


def header_names(header) -> str:
    """The first HEADER_SHOWN_COLUMNS column names of ``header``, each cut to HEADER_SHOWN_CHARS
    characters ("..." marks a cut), as a list for an error message."""
    names = [n if len(n) <= HEADER_SHOWN_CHARS else n[:HEADER_SHOWN_CHARS] + "..." for n in list(header)]
    shown = repr(names[:HEADER_SHOWN_COLUMNS])
    if len(names) > HEADER_SHOWN_COLUMNS:
        shown = shown[:-1] + f", ... {len(names) - HEADER_SHOWN_COLUMNS} more]"
    return shown


def read_csv(path: str | Path, required: list[str]) -> tuple[dict[str, int], Iterator[CsvRow]]:
    """Parse a CSV file strictly: the header must hold ``required`` columns, every record as many
    fields as the header, and a quoted cell must be closed (a truncated file is an error)."""
    text = read_text(path)
    # A quoted cell may span many lines (SPC conversations); the per-line limit above already
    # refuses junk, so let a cell be as long as ten such lines instead of csv's 131,072.
    csv.field_size_limit(max(csv.field_size_limit(), 10 * MAX_LINE_CHARS))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header_fields = next(reader)
    except csv.Error as exc:
        raise ImportFileError(path, 1, f"unreadable CSV header ({exc})") from None
    header = {name.strip(): index for index, name in enumerate(header_fields)}
    missing = [column for column in required if column not in header]
    if missing:
        raise ImportFileError(
            path, 1, f"missing column(s) {', '.join(repr(c) for c in missing)}; the header has {header_names(header)}"
        )
    return header, _csv_rows(path, reader, len(header_fields))


def _csv_rows(path, reader, width: int) -> Iterator[CsvRow]:
    end = reader.line_num
    while True:
        start = end + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(path, start, f"broken CSV record ({exc}); is the file truncated?") from None
        end = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # a blank line between records
        if len(fields) != width:
            raise ImportFileError(
                path, start, f"record has {len(fields)} field(s), the header has {width}; is the row truncated?"
            )
        lines, line = [], start
        for value in fields:
            lines.append(line)
            line += value.count("\n")
        yield CsvRow(start, fields, lines)


def merge_same_role(turns: list[Turn], joiner: str = " ") -> tuple[list[Turn], int]:
    """Join consecutive turns of one role into one turn (keeping the first line).

    A Sample's history must end with a user turn (section 3: H ends with a user utterance),
    so two agent utterances in a row are one agent turn. Returns the turns and how many
    utterances were merged into a previous one.
    """
    merged: list[Turn] = []
    count = 0
    for turn in turns:
        if merged and merged[-1].role == turn.role:
            last = merged[-1]
            generic = last.generic or turn.generic
            merged[-1] = Turn(last.role, f"{last.text}{joiner}{turn.text}", last.line, generic)
            count += 1
        else:
            merged.append(turn)
    return merged, count


def split_from_name(name: str) -> str | None:
    """The split a release's file name gives: ..._train.csv, valid.csv, test_both_original.txt."""
    stem = Path(name).stem.lower()
    for token in reversed(stem.replace("-", "_").split("_")):
        if token in SPLITS:
            return token
        if token in ("validation", "val", "dev"):
            return "valid"
    return None


def samples_of(conversation: ParsedConversation) -> list[tuple[int, list[dict], Turn]]:
    """(turn_index, history, turn) for each non-leading agent turn: the one rule that turns a
    conversation into samples (paper section 3.1), for the import service and ``modeling.grag.data``.

    Parsers merge consecutive turns of one role, so the history H of each such turn ends
    with a user utterance, as the paper's problem statement requires (section 3).
    """
    result = []
    for index, turn in enumerate(conversation.turns):
        if turn.role == AGENT and index > 0 and conversation.turns[index - 1].role == USER:
            history = [{"role": t.role, "text": t.text} for t in conversation.turns[:index]]
            result.append((index, history, turn))
    return result
