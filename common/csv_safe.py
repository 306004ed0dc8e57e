"""The one CSV writer of the app: cells a spreadsheet would run as a formula are neutralised.

OWASP's rule against CSV (formula) injection: a text cell that begins with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a single quote in front, so Excel, LibreOffice and Google
Sheets show it as text instead of evaluating it (``=HYPERLINK(...)``, ``@SUM(...)``, DDE).
Two additions make the rule exactly reversible and keep numbers numbers:

- a text cell that already begins with a single quote gets one more, so that every exported
  cell beginning with a quote carries exactly one added quote (``cell_restore`` drops it);
- numbers are never touched: int and float values, and text that is a plain decimal number
  (``-0.5``, ``+3``, ``-1e-05``), cannot be formulas and stay numbers for the spreadsheet.

Every CSV the app writes goes through ``csv_writer`` / ``csv_dict_writer`` (votes export, the
agreement report, the results tables); the votes importer reverses the rule with
``cell_restore``, so an export imports back to the same data. See docs/security.md.
Reference: https://owasp.org/www-community/attacks/CSV_Injection
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
# A plain decimal number, optionally signed, with an optional exponent: "-0.5", "+3", "1e-05".
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def cell_neutralise(value: Any) -> Any:
    """The value to write for ``value``: text that a spreadsheet would evaluate gets a leading ``'``.

    Non-text values (numbers, None) are returned unchanged; so is text that is a plain number.
    """
    if not isinstance(value, str) or not value:
        return value
    if value[0] == QUOTE or (value[0] in FORMULA_TRIGGERS and not _NUMBER.fullmatch(value)):
        return QUOTE + value
    return value


def cell_restore(text: str) -> str:
    """Undo ``cell_neutralise`` on a cell read back from a CSV: drop one leading ``'``.

    Exact inverse on everything ``cell_neutralise`` writes: ``cell_restore(cell_neutralise(s)) == s``.
    """
    return text[1:] if text.startswith(QUOTE) else text


class _SafeWriter:
    """``csv.writer`` whose rows are neutralised cell by cell.

    A row is formatted with CRLF as the terminator and the CRLF then replaced by ``lineterminator``:
    with "\n" as terminator Python's writer leaves a cell holding a bare CR unquoted, and a
    reader then splits the row there.
    """

    def __init__(self, fh, lineterminator: str = "\n", **kwargs):
        self._fh = fh
        self._end = lineterminator
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n", **kwargs)

    def writerow(self, row: Iterable[Any]):
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow([cell_neutralise(v) for v in row])
        line = self._buffer.getvalue()[:-2] + self._end
        return self._fh.write(line)

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


class _SafeDictWriter(csv.DictWriter):
    """``csv.DictWriter`` over a ``_SafeWriter``: values (and the header) are neutralised."""

    def __init__(self, fh, fieldnames, restval="", extrasaction="raise", **kwargs):
        super().__init__(fh, fieldnames, restval=restval, extrasaction=extrasaction, **kwargs)
        self.writer = _SafeWriter(fh, **kwargs)


def csv_writer(fh, **kwargs) -> _SafeWriter:
    """A ``csv.writer`` over ``fh`` (lines end with ``\\n`` unless told) that neutralises formulas."""
    return _SafeWriter(fh, **kwargs)


def csv_dict_writer(fh, fieldnames, **kwargs) -> _SafeDictWriter:
    """A ``csv.DictWriter`` over ``fh`` (lines end with ``\\n`` unless told) that neutralises formulas."""
    return _SafeDictWriter(fh, fieldnames, **kwargs)
