"""Text rules shared by the metrics and by every generator (R_G, ICL, GRAG). Plain Python, no Django.

Two things live here, each defined once (docs/metrics.md explains them for users):

- ``canonical_text``: the one canonicalisation step every metric applies to both sides before
  scoring (Unicode NFC, whitespace runs collapsed), and ``is_empty``, the one definition of an
  empty text.
- Degenerate-output detection: ``find_loop`` (a repetition loop), ``cut_loop`` (keep the loop's
  first occurrence), ``ends_mid_sentence`` and ``degenerate_flags``, which the three generation
  services store in each output's meta, and ``flag_counts``, which their job summaries report;
  ``response_defects``, the same detector's verdict on a response a study shows (check_study).
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# --- Canonicalisation --------------------------------------------------------------------------

# Recorded in every metric's meta, so a stored figure says how its inputs were prepared.
CANONICALISATION = "NFC+whitespace"


def canonical_text(text: str | None) -> str:
    """``text`` in the form every metric scores: Unicode NFC, whitespace runs as one space, stripped.

    NFC makes the same sentence typed as composed (é, U+00E9) and decomposed (e + U+0301)
    characters one string; without it Char-F1, BLEU and ROUGE count the accent as a different
    character. NFKC is not used: it rewrites characters that carry meaning (x² -> x2, ½ -> 1/2,
    full-width CJK punctuation -> ASCII). Whitespace runs (tabs, newlines, no-break spaces) become
    one space: no metric here gives layout a meaning, and a text of only whitespace becomes empty.
    None is the empty text.
    """
    if not text:
        return ""
    return " ".join(unicodedata.normalize("NFC", text).split())


def is_empty(text: str | None) -> bool:
    """True when ``text`` has no character left after canonicalisation (None, "", whitespace only)."""
    return not canonical_text(text)


# --- Scripts -----------------------------------------------------------------------------------

# Scripts written without spaces between words: Han, kana, Thai, Lao, Khmer, Myanmar, Tibetan.
# A "word" of these is one character (a metric's tokenizer and the loop detector both use this).
_UNSPACED_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK extensions B-G
)


def is_unspaced_char(ch: str) -> bool:
    """True for a character of a script written without spaces between words (Chinese, Japanese, Thai...)."""
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _UNSPACED_RANGES)


_HAN_RANGES = ((0x2E80, 0x2FDF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))


def is_han_char(ch: str) -> bool:
    """True for a Han (Chinese) character, also used in Japanese and Korean."""
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _HAN_RANGES)


def is_word_char(ch: str) -> bool:
    """A letter, a combining mark (Devanagari vowel signs, accents) or a digit: what words are made of."""
    return unicodedata.category(ch)[0] in "LMN"


def words(text: str) -> list[str]:
    """Words of ``text``: runs of letters, marks and digits; each character of an unspaced script alone.

    Punctuation, symbols and emoji separate words and are not words. Case is kept.
    Example: "Hi, 你好 мир!" -> ["Hi", "你", "好", "мир"].
    """
    out: list[str] = []
    current: list[str] = []
    for ch in text:
        if is_word_char(ch) and not is_unspaced_char(ch):
            current.append(ch)
            continue
        if current:
            out.append("".join(current))
            current = []
        if is_unspaced_char(ch) and is_word_char(ch):
            out.append(ch)
    if current:
        out.append("".join(current))
    return out


# --- Degenerate outputs ------------------------------------------------------------------------

# Sentence-final marks: Latin, Chinese/Japanese full-width, Devanagari danda, Arabic, ellipsis.
SENTENCE_END = ".!?…。！？।॥؟"
# What may follow a sentence's final mark and still belong to it: closing quotes and brackets.
_CLOSERS = "\"'”’»)]}」』）"
_SENTENCE_SPLIT = re.compile(rf"(?<=[{re.escape(SENTENCE_END)}])[{re.escape(_CLOSERS)}]*(?:\s+|(?=\S))")

# A sentence repeated back-to-back is a loop once it has this many words (or characters, for an
# unspaced script); shorter ones ("Yes. Yes.", "Ha. Ha.") are a loop only from MIN_COPIES copies.
LOOP_SENTENCE_WORDS = 4
# Copies of a short sentence, or of a span of words or characters, that make a loop.
MIN_COPIES = 3
# Longest span of words checked for a loop without sentence marks ("I love you I love you ...").
MAX_SPAN_WORDS = 12
# A span of characters (scripts without spaces, one unbroken "word") repeated MIN_COPIES + 1
# times: "谢谢你谢谢你谢谢你谢谢你". Units of 1-2 characters are left alone ("哈哈哈哈", "hahaha").
_CHAR_LOOP = re.compile(r"(\S{3,40}?)\1{3,}")

FLAG_EMPTY = "empty"
FLAG_LOOP = "loop"
FLAG_MID_SENTENCE = "cut_mid_sentence"
FLAG_TOKEN_LIMIT = "hit_max_new_tokens"
FLAGS = (FLAG_EMPTY, FLAG_LOOP, FLAG_MID_SENTENCE, FLAG_TOKEN_LIMIT)


@dataclass(frozen=True)
class Loop:
    """A repetition loop in a text: ``unit`` occurs ``copies`` times; the first copy ends at ``keep_until``."""

    unit: str
    copies: int
    keep_until: int  # character offset: text[:keep_until] is everything up to the end of the first copy


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the sentences of ``text`` (split after . ! ? … 。 ！ ？ । ؟)."""
    spans, start = [], 0
    for match in _SENTENCE_SPLIT.finditer(text):
        end = match.start() + len(match.group(0).rstrip())
        if text[start:end].strip():
            spans.append((start, end))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans


def _sentence_key(sentence: str) -> str:
    return " ".join(w.casefold() for w in words(sentence))


def find_loop(text: str) -> Loop | None:
    """The first repetition loop in ``text``, or None.

    A loop is (checked in this order, the first found wins):
    1. a sentence of at least LOOP_SENTENCE_WORDS words followed at once by the same sentence;
    2. any sentence that occurs MIN_COPIES times or more (anywhere in the text);
    3. a span of 1..MAX_SPAN_WORDS words repeated back-to-back MIN_COPIES + 1 times or more;
    4. a span of 3..40 non-space characters repeated back-to-back 4 times or more (Chinese,
       Japanese, or one unbroken "word").
    Sentences compare by their words, case-folded (punctuation and spacing do not matter); the
    last, unfinished sentence of a cut-off generation counts when its words are complete.
    """
    spans = sentence_spans(text)
    keys = [_sentence_key(text[s:e]) for s, e in spans]
    for i in range(len(keys) - 1):
        n_words = len(keys[i].split())
        if keys[i] and keys[i] == keys[i + 1] and n_words >= LOOP_SENTENCE_WORDS:
            copies = 1
            while i + copies < len(keys) and keys[i + copies] == keys[i]:
                copies += 1
            return Loop(unit=text[spans[i][0]:spans[i][1]], copies=copies, keep_until=spans[i][1])
    counts = Counter(k for k in keys if k)
    for i, key in enumerate(keys):
        if key and counts[key] >= MIN_COPIES:
            return Loop(unit=text[spans[i][0]:spans[i][1]], copies=counts[key], keep_until=spans[i][1])
    span_loop = _word_span_loop(text)
    if span_loop is not None:
        return span_loop
    for match in _CHAR_LOOP.finditer(text):
        unit = match.group(1)
        if len(_primitive_root(unit)) <= 2:
            continue  # "aaaa...", "hahaha", "哈哈哈哈": one or two characters repeated are not a loop of a unit
        return Loop(unit=unit, copies=len(match.group(0)) // len(unit), keep_until=match.start() + len(unit))
    return None


def _primitive_root(unit: str) -> str:
    """The shortest string whose repetition makes ``unit``: "ababab" -> "ab", "aaa" -> "a"."""
    n = len(unit)
    for size in range(1, n + 1):
        if n % size == 0 and unit[:size] * (n // size) == unit:
            return unit[:size]
    return unit


_WORD = re.compile(r"\S+")


def _word_span_loop(text: str) -> Loop | None:
    tokens = [(m.start(), m.end(), _sentence_key(m.group(0)) or m.group(0)) for m in _WORD.finditer(text)]
    keys = [t[2] for t in tokens]
    for start in range(len(keys)):
        for size in range(1, MAX_SPAN_WORDS + 1):
            unit = keys[start:start + size]
            if len(unit) < size:
                break
            copies = 1
            while keys[start + copies * size:start + (copies + 1) * size] == unit:
                copies += 1
            if copies >= MIN_COPIES + 1:
                first_end = tokens[start + size - 1][1]
                return Loop(unit=text[tokens[start][0]:first_end], copies=copies, keep_until=first_end)
    return None


def cut_loop(text: str) -> str:
    """``text`` up to the end of its loop's first occurrence (unchanged when it has no loop).

    What follows the first copy is dropped, the rest of the loop and anything after it: a model
    that has started repeating rarely says anything new, and the tail of such a generation is
    usually cut mid-sentence by the token limit. Example:
    "Hi. I like green tea. I like green tea. I like gr" -> "Hi. I like green tea." (rule 1).
    """
    loop = find_loop(text)
    return text if loop is None else text[:loop.keep_until].rstrip()


def ends_mid_sentence(text: str) -> bool:
    """True when a non-empty ``text`` does not end a sentence.

    A text ends a sentence when its last character, after closing quotes and brackets, is a
    sentence-final mark (SENTENCE_END) or an emoji or other symbol ("See you 🙂"). Empty text
    is not "mid-sentence" (it is flagged as empty).
    """
    stripped = canonical_text(text).rstrip(_CLOSERS + " ")
    if not stripped:
        return False
    last = stripped[-1]
    return last not in SENTENCE_END and unicodedata.category(last) != "So"


def degenerate_flags(text: str, *, hit_limit: bool | None = None) -> dict:
    """What is wrong with one generated output, as stored in its meta under "degenerate".

    Returns {"flags": [names from FLAGS], "hit_limit": bool | None, "loop": {"unit", "copies"} | None}.
    ``text`` is the output before any loop cut (the generation as the model made it).
    ``hit_limit`` comes from the backend: True when generation stopped at max_new_tokens, None
    when unknown (a server that does not say, or an output read back from the cache).
    """
    flags = []
    loop = None
    if is_empty(text):
        flags.append(FLAG_EMPTY)
    else:
        found = find_loop(text)
        if found is not None:
            flags.append(FLAG_LOOP)
            loop = {"unit": found.unit[:200], "copies": found.copies}
        if ends_mid_sentence(text):
            flags.append(FLAG_MID_SENTENCE)
    if hit_limit:
        flags.append(FLAG_TOKEN_LIMIT)
    return {"flags": flags, "hit_limit": hit_limit, "loop": loop}


def flag_counts(flag_dicts: Iterable[dict | None]) -> dict:
    """Counts for a job summary: outputs checked, flagged (any flag), and each flag's count.

    ``flag_dicts`` are degenerate_flags() results; None (an output made before detection
    existed) is counted under "unchecked".
    """
    counts = {"checked": 0, "flagged": 0, "unchecked": 0, **{name: 0 for name in FLAGS}}
    for item in flag_dicts:
        if not item:
            counts["unchecked"] += 1
            continue
        counts["checked"] += 1
        names = item.get("flags") or []
        counts["flagged"] += bool(names)
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return counts


def flag_line(counts: dict) -> str:
    """One line for a job log from flag_counts(): "degenerate outputs: 3 of 8 flagged (2 loop, 3 cut_mid_sentence)"."""
    reasons = ", ".join(f"{counts[name]} {name}" for name in FLAGS if counts.get(name))
    line = f"degenerate outputs: {counts['flagged']} of {counts['checked']} flagged"
    if reasons:
        line += f" ({reasons})"
    if counts.get("unchecked"):
        line += f"; {counts['unchecked']} made before flags existed, unchecked"
    return line


# --- Defects a study lists for staff (annotation/giveaways.py, check_study) -----------------------

LONG_WORD = 200  # characters without whitespace: longer than any URL or word a reply needs
DEFECTS = {
    "empty": "is empty",
    "whitespace_only": "is only whitespace",
    "punctuation_only": "is only punctuation or symbols",
    "repetition_loop": "repeats itself in a loop",
    "truncated": "stops mid-sentence",
    "unbroken_word": f"holds one unbroken word of {LONG_WORD}+ characters",
}
LONG_UNPUNCTUATED = 20  # words: a reply this long ending in a letter was most likely cut by a length limit
# Words a finished English sentence does not end on: a reply ending on one was cut off.
_DANGLING = frozenset({"a", "an", "the", "and", "or", "but", "because", "than", "my", "your", "our", "their"})
_WORD_ONLY = re.compile(r"\w+(?:['’]\w+)*")


def response_defects(text: str) -> list[str]:
    """The defects of one response a study shows (keys of ``DEFECTS``), none for an ordinary reply.

    For staff review before a study opens (never to drop a response). A repetition loop is
    ``find_loop``'s, the detector generation flags with; a reply is truncated when it ends on
    ``, ; : - (`` or on a word no sentence ends on (``and``, ``the``, ``my``...), or has
    ``LONG_UNPUNCTUATED``+ words and no final punctuation: stronger evidence than
    ``ends_mid_sentence`` (any reply without a final mark), which generation pairs with its
    token-limit flag. Non-Latin scripts and NFD text are not defects (the checks run on NFC).
    """
    if text == "":
        return ["empty"]
    if not text.strip():
        return ["whitespace_only"]
    text = unicodedata.normalize("NFC", text).strip()
    if all(unicodedata.category(c)[0] in "PSZC" for c in text):
        return ["punctuation_only"]
    kinds = []
    words = [w.lower() for w in _WORD_ONLY.findall(text)]
    if find_loop(text) is not None:
        kinds.append("repetition_loop")
    last = text[-1]
    if last in ",;:-–—(/" or (unicodedata.category(last)[0] in "LN" and (
        (words and words[-1] in _DANGLING) or len(words) >= LONG_UNPUNCTUATED
    )):
        kinds.append("truncated")
    if any(len(chunk) >= LONG_WORD for chunk in text.split()):
        kinds.append("unbroken_word")
    return kinds
