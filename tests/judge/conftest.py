"""Fixtures of the judge tests: studies built from real SPC test conversations, the model loaded once."""
import pytest

from annotation.models import Study
from judge.devdata import spc_judge_pairs
from tests.conftest import shared_file
from tests.factories import items_create, study_create

# What a judge pair (judge.devdata.spc_judge_pairs) gives an Item.
PAIR_FIELDS = ("persona", "history", "generic_response", "baseline_response", "challenger_response")


@pytest.fixture(scope="session")
def spc_pairs():
    return spc_judge_pairs(shared_file("spc/Synthetic-Persona-Chat_test.csv"), n=6)


def study_make(pairs, *, slug="judge-spc", min_confidence=2) -> Study:
    """A study with the paper's four questions and one item per pair; system names that must never reach a prompt."""
    study = study_create(slug, baseline_name="PreSFT-Hist-SECRET", challenger_name="PostGRAG-SECRET",
                         min_confidence=min_confidence)
    items_create(study, [{field: pair[field] for field in ("key", *PAIR_FIELDS)} for pair in pairs])
    return study


@pytest.fixture(scope="module")
def smollm2():
    """(model, tokenizer), loaded once per module (about 25 s); load_causal_lm keeps it for the process."""
    from modeling.llm.loading import load_causal_lm, load_tokenizer

    return load_causal_lm("smollm2"), load_tokenizer("smollm2")
