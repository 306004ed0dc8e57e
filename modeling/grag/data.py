"""Dialogue samples straight from dataset files, without the database (benchmarks, GPU hosts).

Uses the app's own importers (modeling.importers), so a sample here is the Sample row an import
would create: one per non-leading agent turn whose history ends with a user turn (section 3.1).
"""
from __future__ import annotations

from pathlib import Path

from modeling.importers.base import samples_of  # Django-free, like every parser

from .inputs import DialogueSample


def samples_from_file(kind: str, path: str | Path, *, limit: int | None = None) -> list[DialogueSample]:
    """Parse a dataset file with the importer for ``kind`` (spc, pfg, convai2, ed, jsonl)."""
    import importlib

    parser = importlib.import_module(f"modeling.importers.{kind}")
    parsed = parser.parse(path)
    samples: list[DialogueSample] = []
    for conv in parsed.conversations:
        for index, history, turn in samples_of(conv):
            samples.append(DialogueSample(
                history=history, reference=turn.text, generic_response=getattr(turn, "generic", "") or "",
                agent_persona=conv.agent_persona, user_persona=conv.user_persona,
                key=f"{Path(path).name}/{conv.source_id}/{index}",
            ))
            if limit and len(samples) >= limit:
                return samples
    return samples
