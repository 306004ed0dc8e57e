"""Importers on the real public files in ../shared/data (skipped when absent)."""
import json

import pytest
from django.core.management import call_command

from modeling.importers import spc
from modeling.importers.service import dataset_import
from modeling.models import Conversation, Dataset, Sample
from tests.conftest import shared_file

pytestmark = pytest.mark.django_db

SPC_TEST = "spc/Synthetic-Persona-Chat_test.csv"


def import_json(*args) -> dict:
    from io import StringIO

    out = StringIO()
    call_command("import_dataset", *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def test_spc_test_split_counts():
    """968 conversations (one per CSV record, including record 511 whose conversation cell is
    empty) and 13,051 samples, justified line by line from the 27,744 non-empty-cell lines of
    the ``Best Generated Conversation`` column:

    - 1,100 blank lines: ignored.
    - 26,543 speaker lines: 13,501 ``User 1:`` and 13,042 ``User 2:`` (26 with markdown around
      the prefix, e.g. ``* * User 2: * * That's awesome``). Of these,
      - 2 ``User 1:`` lines are only an action (``User 1: (arrives at user 2's house)``): skipped;
      - 27 follow a line of the same speaker once a stage direction or such an action between
        them is dropped (e.g. record 463): 25 ``User 1`` and 2 ``User 2`` lines are merged
        into the turn before;
      - leaving 13,474 user turns and 13,040 agent turns.
    - 101 other lines:
      - 23 lines of record 321, which has no speaker prefix at all: read as alternating
        User 1 / User 2 utterances, 12 user and 11 agent turns;
      - 28 continuation lines merged into the utterance before them: the lasagna recipe of
        record 428 ("Ingredients:", 11 ingredients, "Instructions:", 6 steps: 20 lines after
        "Here's the recipe:") and the 8 ``* ...`` ingredients of record 562;
      - 50 stage directions and junk skipped: ``* * *`` (15), ``[The next day]``, ``(After
        hiking)``, ``The next day:``, ``Saturday``, ``End of conversation.``, the persona dump
        ``User 1 Profiles: {...`` and its 2 following lines, ...

    So skipped_lines = 2 + 50 = 52 and merged_lines = 27 + 28 = 55. Agent turns = 13,040 +
    11 = 13,051; User 1 always opens, so no agent turn is leading and each is one Sample.
    """
    path = shared_file(SPC_TEST)
    report = import_json("spc", str(path))
    assert report == {
        "dataset": "spc", "split": "test", "conversations": 968, "samples": 13051,
        "skipped_lines": 52, "merged_lines": 55,
    }
    assert Conversation.objects.filter(dataset__name="spc", split="test").count() == 968
    assert Sample.objects.filter(dataset__name="spc", split="test").count() == 13051

    # Every sample is traceable to its line: the reference is on that line of the file.
    lines = path.read_text(encoding="utf-8").split("\n")
    first = Sample.objects.get(key="spc/test/Synthetic-Persona-Chat_test:1/1")
    assert first.reference == "Hi, I'm [User 2's name]. It's nice to meet you."
    assert lines[first.source_line - 1] == "User 2: " + first.reference
    assert first.history == [{"role": "user", "text": "Hi, I'm [User 1's name]. What's your name?"}]
    assert first.agent_persona.startswith("I love to meet new people.\nI have a turtle named timothy.")
    assert first.user_persona.startswith("I just bought a brand new house.")
    for history, reference, source_line in Sample.objects.filter(dataset__name="spc").values_list(
        "history", "reference", "source_line"
    ):
        assert history[-1]["role"] == "user"
        # The reference starts on its line (a merged continuation or same-speaker line may follow).
        assert reference[:20] in lines[source_line - 1].replace('""', '"'), (source_line, reference)

    # Stage directions never become utterances; the recipe stays inside its utterance.
    texts = [t["text"] for c in Conversation.objects.filter(dataset__name="spc") for t in c.turns]
    assert not any(t.startswith(("[", "* * *")) or spc.LEADING_ACTION.match(t) for t in texts)
    assert "End of conversation." not in texts and "(name), nice to meet you!" in texts
    recipe = Conversation.objects.get(dataset__name="spc", source_id="Synthetic-Persona-Chat_test:428")
    step = next(t for t in recipe.turns if "Here's the recipe:" in t["text"])
    assert step["role"] == "agent" and "1. Preheat oven to 375 degrees F" in step["text"]


def test_spc_reimport_is_unchanged_and_writes_nothing():
    path = shared_file(SPC_TEST)
    first = dataset_import(kind="spc", path=path, limit=40)
    ids = list(Sample.objects.order_by("pk").values_list("pk", flat=True))
    again = dataset_import(kind="spc", path=path, limit=40)
    assert again.unchanged and not first.unchanged
    assert again.as_dict() == {**first.as_dict(), "unchanged": True}
    assert list(Sample.objects.order_by("pk").values_list("pk", flat=True)) == ids


def test_spc_markdown_prefixes_are_normalised():
    """The valid split has whole conversations written as ``*User 1:* ...`` and ``* User 1: ... *``."""
    result = spc.parse(shared_file("spc/Synthetic-Persona-Chat_valid.csv"))
    assert len(result.conversations) == 1000
    bare = result.conversations[269]  # record 270: "* User 1: Hi! *"
    assert [t.text for t in bare.turns[:2]] == ["Hi!", "Hello!"]
    assert [t.role for t in bare.turns[:2]] == ["user", "agent"]
    starred = result.conversations[153]  # record 154: "*User 1:* Hi there! ..."
    assert starred.turns[0].text == "Hi there! How are you doing today?"
    assert not any("*" in t.text for c in result.conversations for t in c.turns if t.text.startswith("*"))


def test_pfg_folder_counts_personas_and_seeded_split():
    folder = shared_file("pfg/full_dialog.csv").parent
    report = import_json("pfg", str(folder))
    # 20,932 rows, one per turn in this release; the persuader opens all 1,017 dialogues,
    # so samples = 10,600 persuader rows - 1,017 leading turns.
    assert report == {
        "dataset": "pfg", "split": "train,valid", "conversations": 1017, "samples": 9583,
        "skipped_lines": 0, "merged_lines": 0,
    }
    dataset = Dataset.objects.get(name="pfg")
    assert dataset.conversations.filter(split="valid").count() == 102  # round(10% of 1,017)
    assert dataset.conversations.filter(split="train").count() == 915
    conversation = dataset.conversations.get(source_id="20180904-045349_715_live")
    assert conversation.turns[0] == {"role": "agent", "text": "Good morning. How are you doing today?", "line": 2}
    assert conversation.agent_persona.startswith("age: 34.0, sex: Male, race: White, edu: Less than four-year college")
    assert "loyalty: 4.33" in conversation.agent_persona and "extrovert: 3.2" in conversation.agent_persona
    assert conversation.user_persona.startswith("age: 50.0, sex: Female")
    sample = conversation.samples.order_by("turn_index").first()
    assert sample.turn_index == 2 and sample.reference == "I'm doing pretty good for a Tuesday morning."
    assert sample.history[-1] == {"role": "user", "text": "Hi. I am doing good. How about you?"}

    # The split is seeded: a second database import of the same folder under another name agrees.
    valid = set(dataset.conversations.filter(split="valid").values_list("source_id", flat=True))
    dataset_import(kind="pfg", path=folder, name="pfg-again")
    again = set(Conversation.objects.filter(dataset__name="pfg-again", split="valid").values_list("source_id", flat=True))
    assert again == valid


def test_convai2_valid_counts():
    path = shared_file("convai2/valid_self_original_no_cands.txt")
    report = import_json("convai2", str(path), "--name", "convai2")
    # 7,801 "partner<TAB>agent" lines: each agent reply has history, so one sample each.
    assert report == {
        "dataset": "convai2", "split": "valid", "conversations": 1000, "samples": 7801,
        "skipped_lines": 0, "merged_lines": 0,
    }
    first = Conversation.objects.get(source_id="valid_self_original_no_cands:1")
    assert first.agent_persona.split("\n") == [
        "i read twenty books a year.", "i'm a stunt double as my second job.", "i only eat kosher.",
        "i was raised in a single parent household.",
    ]
    sample = first.samples.get(turn_index=1)
    assert sample.history == [{"role": "user", "text": "hello what are doing today ?"}]
    assert sample.reference == "i am good , i just got off work and tired , i have two jobs ."
    assert sample.source_line == 5
