"""Persuasion-for-Good (Wang et al. 2019): a folder with full_dialog.csv and full_info.csv.

full_dialog.csv has one row per sentence (``Unit``) with dialogue id ``B2``, role ``B4``
(0 = persuader, 1 = persuadee) and ``Turn``. A turn of one role is the consecutive rows with
the same (``Turn``, ``B4``), sentences joined with a space (rows after a turn's first are
counted in ``merged_lines``). The persuader is the agent and opens the dialogue, so the
opening turn is a leading agent turn and yields no Sample (section 3.1).

full_info.csv has one row per participant per dialogue (``B2``, ``B4``) with demographics and
trait scores in the ``*.x`` columns. They are the personas, rendered as the paper's Table 2
shows them: ``age: 29.0, sex: Female, care: 5.6, ...`` (demographics first, then the scores
in file order; the ``.x`` suffix dropped, empty values left out, scores with more than two
decimals such as 4.333333333 rounded to two).

Columns the importer does not keep are still checked, so that a shifted or mixed-up row fails
with its line: full_dialog.csv's unnamed first column counts a dialogue's rows from 0 and
``Turn`` starts at 0 and never goes back; full_info.csv has one row per (dialogue, role), and its
numeric columns (the trait scores, ``age.x``, ``income.x``) hold numbers or nothing.
"""
from __future__ import annotations

from pathlib import Path

from .base import AGENT, USER, ImportFileError, ParsedConversation, ParseResult, Turn, merge_same_role, read_csv

DIALOG_FILE = "full_dialog.csv"
INFO_FILE = "full_info.csv"
ROLE_BY_CODE = {"0": AGENT, "1": USER}  # B4: 0 persuader (agent), 1 persuadee (user)
# The nine demographic attributes (section 4.1), shown before the 23 psychological scores.
# Persona columns that are categories, not numbers (the others must parse as numbers or be empty).
CATEGORICAL = {"sex.x", "race.x", "edu.x", "marital.x", "employment.x", "religion.x", "ideology.x"}
MISSING = ("", "NA", "NAN")
DEMOGRAPHICS = ("age", "sex", "race", "edu", "marital", "employment", "income", "religion", "ideology")


def resolve(path: str | Path) -> tuple[Path, Path]:
    """The dialog and info files for PATH: the folder, or either file inside it."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    dialog, info = folder / DIALOG_FILE, folder / INFO_FILE
    for needed in (dialog, info):
        if not needed.exists():
            raise ImportFileError(needed, None, f"missing: a PFG folder needs {DIALOG_FILE} and {INFO_FILE}")
    return dialog, info


def parse(path: str | Path, *, limit: int | None = None) -> ParseResult:
    """Parse a Persuasion-for-Good folder (see the module docstring)."""
    dialog_path, info_path = resolve(path)
    personas = _personas(info_path)
    header, rows = read_csv(dialog_path, ["Unit", "Turn", "B4", "B2"])
    result = ParseResult(conversations=[], source_file=dialog_path.name)
    by_id: dict[str, ParsedConversation] = {}
    last_key: dict[str, tuple[str, str]] = {}
    rows_seen: dict[str, int] = {}  # dialogue id -> rows read (the unnamed first column counts them)
    last_turn: dict[str, int] = {}
    counter = header.get("")  # the release's unnamed row-number column, when the file has it
    for row in rows:
        dialogue_id = row.get(header, "B2").strip()
        role_code = row.get(header, "B4").strip()
        turn_index = row.get(header, "Turn").strip()
        text = " ".join(row.get(header, "Unit").split())
        if not dialogue_id:
            raise ImportFileError(dialog_path, row.line, "empty dialogue id (B2)")
        if role_code not in ROLE_BY_CODE:
            raise ImportFileError(dialog_path, row.line, f"role B4 must be 0 or 1, got {role_code!r}")
        if not turn_index.lstrip("-").isdigit():
            raise ImportFileError(dialog_path, row.line, f"Turn must be an integer, got {turn_index!r}")
        _check_position(dialog_path, row, dialogue_id, int(turn_index), counter, rows_seen, last_turn)
        conversation = by_id.get(dialogue_id)
        if conversation is None:
            if limit is not None and len(by_id) >= limit:
                continue
            agent_persona, user_persona = personas.get(dialogue_id, ("", ""))
            conversation = by_id[dialogue_id] = ParsedConversation(
                source_id=dialogue_id, source_line=row.line, agent_persona=agent_persona,
                user_persona=user_persona, turns=[],
            )
        if not text:
            result.skipped_lines += 1
            continue
        key = (turn_index, role_code)
        turns = conversation.turns
        if turns and last_key.get(dialogue_id) == key:
            last = turns[-1]
            turns[-1] = Turn(last.role, f"{last.text} {text}", last.line)
            result.merged_lines += 1
        else:
            turns.append(Turn(ROLE_BY_CODE[role_code], text, row.line))
        last_key[dialogue_id] = key
    for conversation in by_id.values():
        # Two turns of one role in a row (different Turn numbers) are one turn for H.
        conversation.turns, merged = merge_same_role(conversation.turns)
        result.merged_lines += merged
        if conversation.agent_persona == "" and conversation.user_persona == "":
            result.notes.append(f"{INFO_FILE} has no rows for dialogue {conversation.source_id}")
    result.conversations = list(by_id.values())
    return result


def _check_position(path: Path, row, dialogue_id: str, turn: int, counter, rows_seen: dict, last_turn: dict) -> None:
    """Cross-check the row counter and Turn, which the importer does not store (module docstring)."""
    seen = rows_seen.get(dialogue_id, 0)
    if counter is not None:
        value = row.fields[counter].strip()
        if value != str(seen):
            raise ImportFileError(
                path, row.line,
                f"the first (row number) column is {value!r}, expected {seen} for row {seen + 1} of dialogue {dialogue_id}; "
                "is the row shifted or are the dialogue's rows not together?",
            )
    previous = last_turn.get(dialogue_id)
    if previous is None and turn != 0:
        raise ImportFileError(path, row.line, f"dialogue {dialogue_id} starts at Turn {turn}, expected 0")
    if previous is not None and turn < previous:
        raise ImportFileError(path, row.line, f"Turn {turn} of dialogue {dialogue_id} goes back (previous row: {previous})")
    rows_seen[dialogue_id] = seen + 1
    last_turn[dialogue_id] = turn


def _personas(info_path: Path) -> dict[str, tuple[str, str]]:
    """dialogue id -> (agent persona, user persona) from full_info.csv."""
    header, rows = read_csv(info_path, ["B2", "B4"])
    traits = [name for name in header if name.endswith(".x")]
    if not traits:
        raise ImportFileError(info_path, 1, "no '*.x' persona columns (e.g. age.x, extrovert.x) in the header")
    ordered = [f"{d}.x" for d in DEMOGRAPHICS if f"{d}.x" in header]
    ordered += [t for t in traits if t not in ordered]
    personas: dict[str, dict[str, str]] = {}
    lines: dict[tuple[str, str], int] = {}
    for row in rows:
        role_code = row.get(header, "B4").strip()
        if role_code not in ROLE_BY_CODE:
            raise ImportFileError(info_path, row.line, f"role B4 must be 0 or 1, got {role_code!r}")
        ident = (row.get(header, "B2").strip(), role_code)
        if ident in lines:
            raise ImportFileError(
                info_path, row.line, f"a second row for dialogue {ident[0]} role {role_code} (first on line {lines[ident]})"
            )
        lines[ident] = row.line
        for column in ordered:
            value = row.get(header, column).strip()
            if column not in CATEGORICAL and value.upper() not in MISSING and not _is_number(value):
                raise ImportFileError(
                    info_path, row.line, f"{column} must be a number or empty, got {value[:60]!r}; is the row shifted?"
                )
        parts = []
        for column in ordered:
            value = row.get(header, column).strip()
            if value and value.upper() not in ("NA", "NAN"):
                parts.append(f"{column[:-2]}: {_tidy(value)}")
        personas.setdefault(row.get(header, "B2").strip(), {})[ROLE_BY_CODE[role_code]] = ", ".join(parts)
    return {key: (value.get(AGENT, ""), value.get(USER, "")) for key, value in personas.items()}


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _tidy(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    if "." in value and len(value.split(".")[1]) > 2:
        return f"{number:.2f}"
    return value
