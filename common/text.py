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


# Bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder the text
# around them, so a comment could show staff other words than it holds.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def text_as_typed(text: str) -> str:
    """Free text (comments, flags) as stored: what was typed, less controls other than newline and tab
    and the bidi embeddings/overrides/isolates, stripped; "" when ``text_visible`` finds nothing visible.

    Unlike ``text_visible`` it keeps the other format characters: the zero-width non-joiner that
    Persian spelling needs, the joiners of emoji and Indic conjuncts, and the left/right marks.
    """
    if not text_visible(text, multiline=True):
        return ""
    out = "".join(ch for ch in text if ch in "\n\t" or (unicodedata.category(ch) != "Cc" and ch not in BIDI_CONTROLS))
    return out.strip()
