"""The one rule for study keys: what makes two spellings of an item or question key the same key.

Every reader and writer of study items and votes (``import_study``, study creation from systems
and from the API, ``import_votes``, ``export_votes`` and the votes API) passes keys through
``key_normalise``, so a file that ``export_votes`` wrote always imports again, whatever editor,
spreadsheet or operating system touched it in between.
"""
from __future__ import annotations

import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")  # str patterns match Unicode whitespace (NBSP, tabs, line breaks) too


def key_normalise(key: str) -> str:
    """``key`` in its one stored spelling: Unicode NFC, whitespace runs as one space, no outer whitespace.

    - NFC: ``"café"`` typed on macOS (NFD, ``e`` + combining acute) and on Linux (one code point)
      is one key.
    - Whitespace: a spreadsheet's padding, a non-breaking space or a tab inside a key is one
      space; leading and trailing whitespace is dropped.
    - Case is kept: keys are ids from the source data (``spc/test/Synthetic-Persona-Chat_test:1/1``,
      a conversation's ``source_id``), where ``Conv-1`` and ``conv-1`` may be two conversations;
      folding case could merge two items into one.

    Raises ``TypeError`` for a non-string (callers check types first and say where).
    """
    if not isinstance(key, str):
        raise TypeError(f"a key must be a string, got {type(key).__name__}")
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", key)).strip()
