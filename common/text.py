"""The one rule for people's short free text (display names, flags, comments): what is dropped, what counts as empty.

Dropped: characters of Unicode categories Cc (controls; newlines and tabs kept where the text
may span lines) and Cf (format characters: zero-width spaces and joiners, U+202E RIGHT-TO-LEFT
OVERRIDE and the other bidi marks, which would reorder the text around it on staff pages), and
the few letters that render as nothing (Hangul fillers, the braille blank). What is left is
stripped of whitespace at both ends; a text that is then empty counts as empty (a flag of only
zero-width characters is no flag). Letters of every script are kept.
Reference: Unicode Standard Annex #44 (General_Category), UTS #39 section 3.3 (default ignorables).
"""
from __future__ import annotations

import unicodedata

# Letters (category Lo/So) that render as blank space in common fonts.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def text_visible(text: str, *, multiline: bool = False) -> str:
    """``text`` without invisible characters (see the module docstring), stripped; "" when nothing visible is left.

    ``multiline``: keep "\\n" and "\\t" (comments); otherwise every whitespace run becomes one
    space (names). The caller refuses NUL or other characters before calling, if it wants to.
    """
    kept = "\n\t" if multiline else ""
    out = "".join(
        ch for ch in text
        if ch in kept or (unicodedata.category(ch) not in ("Cc", "Cf") and ch not in BLANK_LETTERS)
    )
    if not multiline:
        out = " ".join(out.split())
    return out.strip()
