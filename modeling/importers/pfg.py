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
"""
from __future__ import annotations

from pathlib import Path

from .base import AGENT, USER, ImportFileError, ParsedConversation, ParseResult, Turn, merge_same_role, read_csv

DIALOG_FILE = "full_dialog.csv"
INFO_FILE = "full_info.csv"
ROLE_BY_CODE = {"0": AGENT, "1": USER}  # B4: 0 persuader (agent), 1 persuadee (user)
# The nine demographic attributes (section 4.1), shown before the 23 psychological scores.
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


def _personas(info_path: Path) -> dict[str, tuple[str, str]]:
    """dialogue id -> (agent persona, user persona) from full_info.csv."""
    header, rows = read_csv(info_path, ["B2", "B4"])
    traits = [name for name in header if name.endswith(".x")]
    if not traits:
        raise ImportFileError(info_path, 1, "no '*.x' persona columns (e.g. age.x, extrovert.x) in the header")
    ordered = [f"{d}.x" for d in DEMOGRAPHICS if f"{d}.x" in header]
    ordered += [t for t in traits if t not in ordered]
    personas: dict[str, dict[str, str]] = {}
    for row in rows:
        role_code = row.get(header, "B4").strip()
        if role_code not in ROLE_BY_CODE:
            raise ImportFileError(info_path, row.line, f"role B4 must be 0 or 1, got {role_code!r}")
        parts = []
        for column in ordered:
            value = row.get(header, column).strip()
            if value and value.upper() not in ("NA", "NAN"):
                parts.append(f"{column[:-2]}: {_tidy(value)}")
        personas.setdefault(row.get(header, "B2").strip(), {})[ROLE_BY_CODE[role_code]] = ", ".join(parts)
    return {key: (value.get(AGENT, ""), value.get(USER, "")) for key, value in personas.items()}


def _tidy(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    if "." in value and len(value.split(".")[1]) > 2:
        return f"{number:.2f}"
    return value
