"""Operations that change annotation data, one module per seam: ``studies``, ``accounts``,
``assignment``, ``ratings``, ``votes`` and ``workflow`` (skip, flag, instructions) (``base`` holds what they share). Public names are
re-exported here, so callers write ``from annotation.services import rating_submit``.

The human evaluation of the GRAG paper (section 5.5, Table 5): each item pairs a baseline's and
a challenger's response for one sample; ``overlap`` annotators (three in the paper) answer four
questions with "A better" / "B better" / "Similar" and a confidence from 1 to 5. What the
annotator saw (A/B/S, the side the baseline was on) is stored next to the canonical answer
(baseline / challenger / similar), so blinding and position bias can be audited later.

Concurrency: on PostgreSQL, ``assignment_next`` locks candidate item rows with
``SELECT ... FOR UPDATE SKIP LOCKED`` and re-counts their live assignments after taking the
lock, so two annotators asking at once never push an item past its overlap; the database's
unique constraints (one assignment per item and annotator, one current rating per item,
question and rater) back the code up.
"""

from .accounts import AccountRefused, account_password_set, annotator_add, password_validate
from .assignment import SIDE_BALANCE_BOUND, assignment_next, live_q
from .base import (
    CANDIDATES_LOCKED,
    CHOICES_SHOWN,
    Answer,
    ItemConflict,
    ParticipantInactive,
    RatingInvalid,
    ReservationLost,
    StudyClosed,
    StudyFieldError,
    StudyFileError,
    User,
)
from .ratings import (
    RatingKey,
    answers_validate,
    comment_clean,
    rating_submit,
    rating_submit_for_item,
    ratings_append,
    ratings_current,
    ratings_retire,
)
from .studies import (
    STUDY_EDITABLE,
    study_create,
    study_create_from_systems,
    study_create_with_items,
    study_import_jsonl,
    study_items_add,
    study_judge_only_get_or_create,
    study_names_check,
    study_neutral_slug,
    study_own_words,
    study_questions_create,
    study_system_words,
    study_traps_create,
    study_update,
)
from .study_files import MAX_LINE_BYTES, item_row_parse, study_file_read
from .votes import VOTE_COLUMNS, VOTE_EXPORT_COLUMNS, VotesFileError, votes_import
from .workflow import assignment_skip, flag_create, flag_resolve, instructions_confirm, instructions_confirmed

__all__ = [
    "AccountRefused",
    "Answer",
    "CANDIDATES_LOCKED",
    "CHOICES_SHOWN",
    "ItemConflict",
    "ParticipantInactive",
    "StudyClosed",
    "MAX_LINE_BYTES",
    "RatingInvalid",
    "RatingKey",
    "ReservationLost",
    "SIDE_BALANCE_BOUND",
    "STUDY_EDITABLE",
    "StudyFieldError",
    "StudyFileError",
    "User",
    "VOTE_COLUMNS",
    "VOTE_EXPORT_COLUMNS",
    "VotesFileError",
    "account_password_set",
    "annotator_add",
    "answers_validate",
    "assignment_skip",
    "comment_clean",
    "flag_create",
    "flag_resolve",
    "instructions_confirm",
    "instructions_confirmed",
    "assignment_next",
    "item_row_parse",
    "live_q",
    "password_validate",
    "rating_submit",
    "rating_submit_for_item",
    "ratings_append",
    "ratings_current",
    "ratings_retire",
    "study_create",
    "study_create_from_systems",
    "study_create_with_items",
    "study_file_read",
    "study_import_jsonl",
    "study_items_add",
    "study_judge_only_get_or_create",
    "study_names_check",
    "study_own_words",
    "study_neutral_slug",
    "study_questions_create",
    "study_system_words",
    "study_traps_create",
    "study_update",
    "votes_import",
]
