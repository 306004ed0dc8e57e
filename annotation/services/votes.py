"""Votes files: ratings collected elsewhere, imported and checked line by line."""

import csv
import io
from pathlib import Path
from typing import Any

from django.db import transaction

from common.csv_safe import QUOTE, cell_restore
from modeling.importers.base import ImportFileError, read_text

from ..keys import key_normalise
from ..models import COMMENT_MAX_CHARS, CONFIDENCE_MAX, CONFIDENCE_MIN, Rating, Study, confidence_in_scale
from .base import User
from .ratings import ratings_append

# The columns every votes file has. export_votes adds the rater's optional comment on the item
# (issue 21) as a last column; a file made elsewhere may leave it out (it then reads as no comment).
VOTE_COLUMNS = ("item_key", "rater", "rater_kind", "question", "choice", "confidence")
VOTE_EXPORT_COLUMNS = (*VOTE_COLUMNS, "comment")


class VotesFileError(ValueError):
    """A votes file that cannot be imported; the message names the file and line."""


def _votes_cell(text: str) -> str:
    """A votes-file cell as the exporter meant it.

    A cell beginning with ``'`` was neutralised against formula injection by ``export_votes``
    (``common.csv_safe``): its one added quote is dropped and the rest kept exactly (a key may
    begin with a tab). Any other cell is stripped of surrounding blanks, as typed by hand.
    """
    return cell_restore(text) if text.startswith(QUOTE) else text.strip()


def _votes_read(*, study: Study, path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise VotesFileError(f"{path}: no such file")
    # Keys compare in their one normal form (annotation.keys): an exported file that an editor
    # re-saved with NFD accents or padded cells still finds its items.
    items = {key_normalise(key): pk for key, pk in study.items.values_list("key", "id")}
    questions = {key_normalise(q): q for q in study.questions.values_list("key", flat=True)}
    rows, seen = [], {}

    try:
        # The dataset importers' reader: UTF-8 check, NUL bytes and over-long lines, each named by line.
        text = read_text(path)
    except ImportFileError as exc:
        raise VotesFileError(str(exc)) from exc
    reader = None
    try:
        with io.StringIO(text, newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in VOTE_COLUMNS if c not in header]
            if missing:
                raise VotesFileError(
                    f"{path}:1: missing column(s) {', '.join(missing)}; the header must be {','.join(VOTE_COLUMNS)}"
                )
            for row in reader:
                line = reader.line_num
                where = f"{path}:{line}"
                if None in row or any(row.get(c) is None for c in header):
                    raise VotesFileError(f"{where}: expected {len(header)} columns, got a different number")
                key, rater = key_normalise(_votes_cell(row["item_key"])), _votes_cell(row["rater"])
                if key not in items:
                    raise VotesFileError(f"{where}: no item {key!r} in study {study.slug!r}")
                if not rater or len(rater) > 150:
                    raise VotesFileError(f"{where}: rater must be a name of 1 to 150 characters")
                kind = _votes_cell(row["rater_kind"])
                if kind not in Rating.RaterKind.values:
                    raise VotesFileError(f"{where}: rater_kind must be human or llm, not {kind!r}")
                question = questions.get(key_normalise(_votes_cell(row["question"])))
                if question is None:
                    raise VotesFileError(f"{where}: no question {row['question'].strip()!r} in study {study.slug!r}")
                choice = _votes_cell(row["choice"])
                if choice not in Rating.Choice.values:
                    raise VotesFileError(f"{where}: choice must be baseline, challenger or similar, not {choice!r}")
                try:
                    confidence = int(row["confidence"].strip())
                except ValueError:
                    raise VotesFileError(
                        f"{where}: confidence must be a whole number from {CONFIDENCE_MIN} to {CONFIDENCE_MAX}, "
                        f"not {row['confidence']!r}") from None
                if not confidence_in_scale(confidence):
                    raise VotesFileError(f"{where}: confidence must be from {CONFIDENCE_MIN} to {CONFIDENCE_MAX}, not {confidence}")
                comment = row.get("comment") or ""
                # The comment is kept as written (cell_restore only): it may begin or end with blanks.
                comment = cell_restore(comment) if comment.startswith(QUOTE) else comment
                if len(comment) > COMMENT_MAX_CHARS or "\x00" in comment:
                    raise VotesFileError(f"{where}: comment must be at most {COMMENT_MAX_CHARS} characters, without NUL")
                ident = (key, question, rater)
                if ident in seen:
                    raise VotesFileError(f"{where}: a second vote of {rater!r} on {key!r} {question} (first on line {seen[ident]})")
                seen[ident] = line
                rows.append((line, {"item_id": items[key], "rater": rater, "rater_kind": kind, "question": question,
                                    "choice": choice, "confidence": confidence, "comment": comment}))
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 1
        raise VotesFileError(f"{path}:{line}: unreadable CSV ({exc})") from exc
    return rows


@transaction.atomic
def votes_import(*, study: Study, path: str | Path) -> dict[str, int]:
    """Load ratings collected elsewhere (columns ``VOTE_COLUMNS``, optionally ``comment``); return counts added/changed/unchanged.

    The whole file is checked first; on any bad line nothing is written. A vote equal to the
    rater's current one is skipped (re-importing changes nothing); a different one is appended
    and becomes current, like a changed answer in the app.
    """
    rows = _votes_read(study=study, path=Path(path))
    current = {
        (r.item_id, r.question, r.rater): r
        for r in Rating.objects.filter(item__study=study, is_current=True)
    }
    users = dict(User.objects.filter(username__in={r["rater"] for _, r in rows}).values_list("username", "id"))
    ratings = [
        Rating(annotator_id=users.get(r["rater"]) if r["rater_kind"] == Rating.RaterKind.HUMAN else None,
               meta={"source": str(path)}, **r)
        for _line, r in rows
    ]
    stored = ratings_append(ratings=ratings, compare=("choice", "confidence", "rater_kind", "comment"), current=current)
    unchanged = sum(not r.is_new for r in stored)
    changed = sum(r.is_new and (r.item_id, r.question, r.rater) in current for r in stored)
    return {"added": len(stored) - unchanged - changed, "changed": changed, "unchanged": unchanged}
