"""The canonical format: one JSON object per line, one conversation per object.

    {"id": "demo-001", "split": "train",
     "agent_persona": "I keep bees.\\nI live by the sea.", "user_persona": "I am a nurse.",
     "turns": [{"role": "user", "text": "Hi! What do you do?"},
               {"role": "agent", "text": "I keep bees by the sea.", "generic": "Hello! How can I help?"}],
     "meta": {"source": "anything JSON"}}

- ``id`` (string, required, unique in the file): the conversation's id.
- ``turns`` (required, non-empty): objects with ``role`` ``"user"`` or ``"agent"`` and a
  non-empty ``text``; an agent turn may carry ``generic``, a generic response R_G for it
  (section 3.1), which the importer stores with the Sample so that no LLM is needed for it.
- ``agent_persona`` / ``user_persona`` (optional): a string, or a list of strings (one line each).
- ``split`` (optional): ``train``, ``valid`` or ``test``; without it, ``--split`` or the
  seeded 90/10 train/valid split applies.
- ``meta`` (optional object): kept on the Conversation.

Blank lines are ignored. Consecutive turns of one role are merged (``merged_lines``).
"""
from __future__ import annotations

import json
from pathlib import Path

from .base import ROLES, SPLITS, ImportFileError, ParsedConversation, ParseResult, Turn, merge_same_role, read_text

FIELDS = {"id", "split", "agent_persona", "user_persona", "turns", "meta"}


def parse(path: str | Path, *, limit: int | None = None) -> ParseResult:
    """Parse a canonical JSONL file (see the module docstring for the fields)."""
    path = Path(path)
    lines = read_text(path).split("\n")
    result = ParseResult(conversations=[], source_file=path.name)
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if limit is not None and len(result.conversations) >= limit:
            break
        conversation = _conversation(path, number, raw)
        if conversation.source_id in seen:
            raise ImportFileError(
                path, number, f"id {conversation.source_id!r} was already used on line {seen[conversation.source_id]}"
            )
        seen[conversation.source_id] = number
        conversation.turns, merged = merge_same_role(conversation.turns)
        result.merged_lines += merged
        result.conversations.append(conversation)
    if not result.conversations:
        raise ImportFileError(path, 1, "no conversations in the file")
    return result


def _conversation(path: Path, number: int, raw: str) -> ParsedConversation:
    def fail(message: str):
        raise ImportFileError(path, number, message)

    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        fail(f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object")
    if not isinstance(obj, dict):
        fail(f"expected a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - FIELDS
    if unknown:
        fail(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(FIELDS)}")
    source_id = obj.get("id")
    if not isinstance(source_id, str | int) or isinstance(source_id, bool) or str(source_id).strip() == "":
        fail("'id' must be a non-empty string")
    source_id = str(source_id).strip()
    if len(source_id) > 150:
        fail(f"'id' is {len(source_id)} characters long (limit 150)")
    split = obj.get("split")
    if split is not None and split not in SPLITS:
        fail(f"'split' must be one of {list(SPLITS)}, got {split!r}")
    personas = []
    for key in ("agent_persona", "user_persona"):
        value = obj.get(key, "")
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            value = "\n".join(item.strip() for item in value if item.strip())
        elif not isinstance(value, str):
            fail(f"'{key}' must be a string or a list of strings, got {type(value).__name__}")
        personas.append(value.strip())
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        fail(f"'meta' must be an object, got {type(meta).__name__}")
    turns_in = obj.get("turns")
    if not isinstance(turns_in, list) or not turns_in:
        fail("'turns' must be a non-empty list of {\"role\": ..., \"text\": ...} objects")
    turns = []
    for position, turn in enumerate(turns_in):
        where = f"turns[{position}]"
        if not isinstance(turn, dict):
            fail(f"{where} must be an object, got {type(turn).__name__}")
        if turn.get("role") not in ROLES:
            fail(f"{where}.role must be 'user' or 'agent', got {turn.get('role')!r}")
        text = turn.get("text")
        if not isinstance(text, str) or not text.strip():
            fail(f"{where}.text must be a non-empty string, got {text!r}")
        generic = turn.get("generic", "")
        if not isinstance(generic, str):
            fail(f"{where}.generic must be a string, got {type(generic).__name__}")
        if generic and turn["role"] != "agent":
            fail(f"{where}.generic is only allowed on agent turns")
        extra = set(turn) - {"role", "text", "generic"}
        if extra:
            fail(f"{where} has unknown field(s) {sorted(extra)}")
        turns.append(Turn(turn["role"], text.strip(), number, generic.strip()))
    return ParsedConversation(
        source_id=source_id, source_line=number, agent_persona=personas[0], user_persona=personas[1],
        turns=turns, split=split, meta=meta,
    )
