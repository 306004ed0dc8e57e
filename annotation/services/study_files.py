"""Study files (one JSON object a line): reading and checking every line before anything is written."""


import json
from pathlib import Path
from typing import Any

from ..keys import key_normalise
from ..models import Item
from .base import StudyFileError

# Lines longer than this in a study file are refused: no real item is that long, and reading one
# would only exhaust memory.
MAX_LINE_BYTES = 1_000_000


def _history_normalise(history: Any, where: str) -> list[dict[str, str]]:
    """Turns as [{"role": "user"|"agent", "text"}]; a plain string becomes turns by its prefixes."""
    if isinstance(history, str):
        turns = []
        for line in history.splitlines():
            line = line.strip()
            if not line:
                continue
            role, sep, text = line.partition(":")
            if sep and role.strip().lower() in ("user", "agent"):
                turns.append({"role": role.strip().lower(), "text": text.strip()})
            elif turns:
                turns[-1]["text"] += "\n" + line
            else:
                turns.append({"role": "user", "text": line})
        return turns
    if not isinstance(history, list):
        raise StudyFileError(f"{where}: \"history\" must be a list of turns or a string, not {type(history).__name__}")
    turns = []
    for i, turn in enumerate(history):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "agent") or not isinstance(turn.get("text"), str):
            raise StudyFileError(
                f"{where}: history[{i}] must be {{\"role\": \"user\"|\"agent\", \"text\": \"...\"}}, got {json.dumps(turn)[:200]}"
            )
        turns.append({"role": turn["role"], "text": turn["text"]})
    return turns


def item_row_parse(obj: Any, *, where: str, baseline: str, challenger: str) -> dict[str, Any]:
    """Check one study item (a JSONL line or an API object) and return Item fields; raise StudyFileError."""
    if not isinstance(obj, dict):
        raise StudyFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    key = obj.get("key")
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str) or not key.strip():
        raise StudyFileError(f"{where}: \"key\" is missing or not a non-empty string")
    key = key_normalise(key)
    if len(key) > 300:
        raise StudyFileError(f"{where}: \"key\" is longer than 300 characters")
    persona = obj.get("persona", "")
    if isinstance(persona, list) and all(isinstance(p, str) for p in persona):
        persona = "\n".join(persona)
    if not isinstance(persona, str):
        raise StudyFileError(f"{where}: \"persona\" must be a string or a list of strings")
    history = _history_normalise(obj.get("history", []), where)
    generic = obj.get("generic_response") or ""
    if not isinstance(generic, str):
        raise StudyFileError(f"{where}: \"generic_response\" must be a string (may be empty)")
    responses = obj.get("responses")
    if not isinstance(responses, dict):
        raise StudyFileError(f"{where}: \"responses\" must be an object {{\"<system>\": \"<text>\"}}")
    for name in (baseline, challenger):
        # An empty or whitespace-only response is a response (real systems produce them): it is
        # kept, shown as "(empty response)" and listed by the study check. Only a missing system
        # or a value that is not text is an error, each with its own message.
        if name not in responses:
            have = ", ".join(repr(str(n)) for n in sorted(map(str, responses))) or "none"
            raise StudyFileError(f"{where}: \"responses\" has no entry for system {name!r} (it has: {have})")
        if not isinstance(responses[name], str):
            raise StudyFileError(
                f"{where}: the response of system {name!r} must be a string (it may be empty), "
                f"not {type(responses[name]).__name__}"
            )
    gold = obj.get("gold") or {}
    if not isinstance(gold, dict):
        raise StudyFileError(f"{where}: \"gold\" must be an object {{\"q1\": \"<system>\"|\"similar\"}}")
    gold_answers = {}
    for q, answer in gold.items():
        canonical = {baseline: "baseline", challenger: "challenger", "similar": "similar"}.get(answer)
        if canonical is None:
            raise StudyFileError(f"{where}: gold answer for {q!r} must be {baseline!r}, {challenger!r} or 'similar'")
        gold_answers[str(q)] = canonical
    kind = Item.Kind.GOLD if gold_answers else Item.Kind.NORMAL
    if obj.get("onboarding") is not None:
        # A qualification item of its own (issue 21): shown only in a participant's onboarding.
        if obj["onboarding"] is not True or not gold_answers:
            raise StudyFileError(f"{where}: \"onboarding\": true needs a \"gold\" object with the known answers")
        kind = Item.Kind.ONBOARDING
    return {
        "key": key, "persona": persona, "history": history, "generic_response": generic,
        "baseline_response": responses[baseline], "challenger_response": responses[challenger],
        "kind": kind, "gold_answers": gold_answers,
    }


def study_file_read(*, path: str | Path, baseline: str, challenger: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse and check every line of a study file before anything is written."""
    path = Path(path)
    if not path.is_file():
        raise StudyFileError(f"{path}: no such file")
    rows, seen = [], {}
    with path.open("rb") as fh:
        lineno = 0
        # readline with a limit: a runaway line is refused without reading it whole.
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            where = f"{path}:{lineno}"
            if len(raw) > MAX_LINE_BYTES:
                raise StudyFileError(f"{where}: line is longer than {MAX_LINE_BYTES} bytes")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StudyFileError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8") from exc
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise StudyFileError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
            row = item_row_parse(obj, where=where, baseline=baseline, challenger=challenger)
            if row["key"] in seen:
                raise StudyFileError(f"{where}: key {row['key']!r} already used on line {seen[row['key']]}")
            seen[row["key"]] = lineno
            rows.append((where, row))
    if not rows:
        raise StudyFileError(f"{path}: no items (the file is empty)")
    return rows
