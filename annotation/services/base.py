"""What every annotation service shares: the answer type, its errors and the assignment constants."""

from dataclasses import dataclass

from django.contrib.auth import get_user_model

User = get_user_model()

CHOICES_SHOWN = ("A", "B", "S")
# Candidate items locked per request: a few, so that one skipped by the side-balance rule
# still leaves a choice, but not so many that concurrent annotators starve each other.
CANDIDATES_LOCKED = 4


@dataclass(frozen=True)
class Answer:
    """One answer as the annotator gave it: the question key, A / B / S as shown, confidence 1-5."""

    question: str
    choice: str
    confidence: int


class RatingInvalid(ValueError):
    """Answers that cannot be stored; ``errors`` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class ReservationLost(RatingInvalid):
    """The annotator's reservation expired and the item went to someone else meanwhile."""


class StudyClosed(RatingInvalid):
    """The study is closed: an annotator's answers, skips and flags are read-only (the API answers 409)."""

    def __init__(self):
        super().__init__({"study": "this study is closed: your answers can be read but no longer changed"})


class ItemConflict(RatingInvalid):
    """A request that the item's state rules out (skipping a rated item, rating a skipped one): 409."""


class StudyFileError(ValueError):
    """A study file that cannot be imported; the message names the file and line."""


class StudyFieldError(ValueError):
    """A study setting, title or slug that cannot be stored; ``field`` names it (the API's error key)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class ParticipantInactive(StudyClosed):
    """A crowd participant who is no longer active (finished, screened out, left, out of time) tried to
    rate, change an answer, skip or flag: refused with 409 like a closed study, with the reason."""

    def __init__(self, message: str):
        RatingInvalid.__init__(self, {"participant": message})
