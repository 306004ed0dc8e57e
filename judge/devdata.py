"""Judge inputs from real Synthetic-Persona-Chat test conversations, for tests and the benchmark.

Not an importer (``modeling.importers`` is): a small, forgiving parse of the SPC CSV that yields
what an annotator sees for one agent turn (section 5.5 evaluates on the SPC test set), with two
different candidate responses: the reference reply and the agent's reply from a later turn of the
same conversation (fluent and on-persona, but out of place), so a judge has a real difference
to find. User 1 opens every SPC conversation; User 2 is the agent.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

# Markdown and bullets around the speaker prefix ("* * User 1: * * Hello", "*User 2:* Me too").
_PREFIX = re.compile(r"^[\s*_\-]*User\s*([12])\s*[:：][\s*_]*(.*)$", re.IGNORECASE)


def spc_turns(conversation: str) -> list[tuple[str, str]]:
    """(role, text) turns; lines without a speaker prefix (stage directions, continuations) are dropped."""
    turns = []
    for line in conversation.splitlines():
        match = _PREFIX.match(line)
        if match and match.group(2).strip():
            turns.append(("user" if match.group(1) == "1" else "agent", match.group(2).strip().strip("*").strip()))
    return turns


def spc_judge_pairs(path: str | Path, *, n: int, agent_turn: int = 2, gap: int = 2) -> list[dict]:
    """``n`` judge inputs: persona, history up to the agent's ``agent_turn``-th reply, generic response
    (none in SPC: the panel is left out), and as responses that reply and the one ``gap`` agent turns later.

    Even-numbered pairs show the reference as the baseline, odd ones as the challenger, so that the
    "right" answer is not always the same system.
    """
    pairs: list[dict] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row_number, row in enumerate(csv.DictReader(fh), start=2):
            turns = spc_turns(row.get("Best Generated Conversation", ""))
            agent_at = [i for i, (role, _) in enumerate(turns) if role == "agent"]
            if len(agent_at) <= agent_turn + gap:
                continue
            at = agent_at[agent_turn]
            reference, other = turns[at][1], turns[agent_at[agent_turn + gap]][1]
            if reference == other:
                continue
            baseline, challenger = (reference, other) if len(pairs) % 2 == 0 else (other, reference)
            pairs.append({
                "key": f"spc-test-row{row_number}-turn{at}",
                "persona": row.get("user 2 personas", "").strip(),
                "history": [{"role": role, "text": text} for role, text in turns[:at]],
                "generic_response": "",
                "baseline_response": baseline,
                "challenger_response": challenger,
                "reference_is_baseline": baseline == reference,
            })
            if len(pairs) >= n:
                break
    return pairs
