"""Importers on small hand-made files: EmpatheticDialogues, jsonl, and broken files of every format.

A broken file must fail with a message naming the file and the line, and write nothing.
"""
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from modeling.importers.base import MAX_LINE_CHARS
from modeling.models import Conversation, Dataset, Sample

pytestmark = pytest.mark.django_db

ED_HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
# Two conversations in the published ED layout (text written for these tests). The second row
# of the first conversation carries a 9th field, like the release's candidate lists.
ED_ROWS = (
    "hit:1_conv:2,1,proud,My daughter finished her first marathon_comma_ all 42 km.,101,"
    "My daughter ran her first marathon yesterday_comma_ and finished it!,5|5|5_2|2|5,\n"
    "hit:1_conv:2,2,proud,My daughter finished her first marathon_comma_ all 42 km.,202,"
    "That is wonderful! How long did it take her?,5|5|5_2|2|5,,cand one|cand two\n"
    "hit:1_conv:2,3,proud,My daughter finished her first marathon_comma_ all 42 km.,101,"
    "Just under five hours. I cried at the finish line.,5|5|5_2|2|5,\n"
    "hit:1_conv:2,4,proud,My daughter finished her first marathon_comma_ all 42 km.,202,"
    "You must be so proud_comma_ that is a huge achievement.,5|5|5_2|2|5,\n"
    "hit:3_conv:6,1,afraid,I heard a noise downstairs at 3am.,303,Last night I heard someone downstairs.,,\n"
    "hit:3_conv:6,2,afraid,I heard a noise downstairs at 3am.,404,Oh no! Was anyone there?,,\n"
    "hit:3_conv:6,3,afraid,I heard a noise downstairs at 3am.,303,It was only the cat_comma_ thankfully.,,\n"
)


def run_import(*args) -> dict:
    out = StringIO()
    call_command("import_dataset", *args, stdout=out)
    return json.loads(out.getvalue())


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def assert_nothing_written():
    assert (Dataset.objects.count(), Conversation.objects.count(), Sample.objects.count()) == (0, 0, 0)


def test_ed_listener_is_agent_and_commas_are_unescaped(tmp_path):
    path = write(tmp_path / "valid.csv", ED_HEADER + ED_ROWS)
    report = run_import("ed", str(path))
    # conversation 1: utterances 2 and 4 are the listener's; conversation 2: utterance 2.
    assert report == {
        "dataset": "ed", "split": "valid", "conversations": 2, "samples": 3, "skipped_lines": 0, "merged_lines": 0,
    }
    conversation = Conversation.objects.get(source_id="hit:1_conv:2")
    assert conversation.agent_persona == "emotion: proud, situation: My daughter finished her first marathon, all 42 km."
    assert conversation.source_line == 2
    last = conversation.samples.get(turn_index=3)
    assert last.reference == "You must be so proud, that is a huge achievement."
    assert last.source_line == 5
    assert [turn["role"] for turn in last.history] == ["user", "agent", "user"]
    assert last.history[0]["text"] == "My daughter ran her first marathon yesterday, and finished it!"


def test_jsonl_fields_generic_responses_and_merged_turns(tmp_path):
    lines = [
        {"id": "a", "split": "test", "agent_persona": ["I sail.", "I cook."], "user_persona": "I fish.",
         "turns": [{"role": "agent", "text": "Ahoy!"}, {"role": "user", "text": "Hi"},
                   {"role": "user", "text": "there"}, {"role": "agent", "text": "Sail with me?", "generic": "Hello."}]},
        {"id": "b", "split": "test", "turns": [{"role": "user", "text": "Yo"}, {"role": "agent", "text": "Hey"}]},
    ]
    path = write(tmp_path / "mine.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    report = run_import("jsonl", str(path))
    # "a": the leading agent turn has no sample; the two user lines are one user turn.
    assert report == {
        "dataset": "mine", "split": "test", "conversations": 2, "samples": 2, "skipped_lines": 0, "merged_lines": 1,
    }
    sample = Sample.objects.get(key="mine/test/a/2")
    assert sample.history == [{"role": "agent", "text": "Ahoy!"}, {"role": "user", "text": "Hi there"}]
    assert sample.agent_persona == "I sail.\nI cook." and sample.user_persona == "I fish."
    assert (sample.generic_response, sample.generic_prompt_version) == ("Hello.", "hand-written")
    assert Sample.objects.get(key="mine/test/b/1").generic_response == ""


def test_demo_dataset_imports_with_generic_responses():
    path = Path(__file__).resolve().parents[2] / "data" / "demo" / "demo.jsonl"
    assert path.stat().st_size < 100_000
    report = run_import("jsonl", str(path), "--name", "demo")
    assert report["conversations"] >= 30 and report["split"] == "train,valid,test"
    samples = Sample.objects.filter(dataset__name="demo")
    assert samples.count() == report["samples"] > 0
    assert not samples.filter(generic_response="").exists()
    assert {"train", "valid", "test"} == set(samples.values_list("split", flat=True))


# --- broken files: (kind, file name, content, expected line, words the message must contain) ---

SPC_HEADER = "user 1 personas,user 2 personas,Best Generated Conversation\n"
SPC_GOOD = '"I fish.","I sail.","User 1: Hi\nUser 2: Hello"\n'
long_line = json.dumps({"id": "x", "turns": [{"role": "user", "text": "a" * (MAX_LINE_CHARS + 1)}]})

BROKEN = [
    ("spc", "s_test.csv", "", 1, ["empty"]),
    ("spc", "s_test.csv", "user 1 personas,Best Generated Conversation\n" + '"a","b"\n', 1,
     ["missing column", "user 2 personas"]),
    ("spc", "s_test.csv", SPC_HEADER + SPC_GOOD + '"I run.","I swim.","User 1: Hi\nUser 2: Hel', 4,
     ["truncated"]),
    ("spc", "s_test.csv", SPC_HEADER + SPC_GOOD + '"I run.","I swim."\n', 4, ["2 field(s)", "header has 3"]),
    ("spc", "s_test.csv", (SPC_HEADER + SPC_GOOD + '"Je suis \xe9l\xe8ve.","b","User 1: x"\n').encode("latin-1"), 4,
     ["not UTF-8"]),
    ("ed", "test.csv", "conv_id,utterance_idx,context,prompt,speaker_idx\n" + "hit:1,1,sad,p,1\n", 1,
     ["missing column", "utterance"]),
    ("ed", "test.csv", ED_HEADER + ED_ROWS.splitlines(keepends=True)[0] + "hit:1_conv:2,2,proud\n", 3,
     ["truncated"]),
    ("ed", "test.csv", ED_HEADER + "hit:1_conv:2,two,proud,p,1,Hello,,\n", 2, ["utterance_idx", "'two'"]),
    ("convai2", "valid_x.txt", "1 your persona: i sail.\n2 hello there no tab here\n", 2, ["no tab"]),
    ("convai2", "valid_x.txt", "1 your persona: i sail.\nhello\tthere\n", 2, ["number"]),
    ("convai2", "valid_x.txt", "  \n\n", 1, ["empty"]),
    ("jsonl", "j.jsonl", '{"id": "a", "turns": [{"role": "user", "text": "hi"}]}\n{"id": "b", "turns": \n', 2,
     ["not valid JSON"]),
    ("jsonl", "j.jsonl", '{"id": "a", "turns": "hi there"}\n', 1, ["'turns' must be a non-empty list"]),
    ("jsonl", "j.jsonl", '{"id": "a", "turns": [{"role": "bot", "text": "hi"}]}\n', 1, ["turns[0].role"]),
    ("jsonl", "j.jsonl", '{"id": "a", "turns": [{"role": "user", "text": 42}]}\n', 1, ["turns[0].text"]),
    ("jsonl", "j.jsonl", '{"id": ["a"], "turns": [{"role": "user", "text": "hi"}]}\n', 1, ["'id'"]),
    ("jsonl", "j.jsonl", '{"id": "a", "split": "dev", "turns": [{"role": "user", "text": "hi"}]}\n', 1, ["'split'"]),
    ("jsonl", "j.jsonl", '{"id": "a", "turns": [{"role": "user", "text": "hi"}]}\n' * 2, 2, ["already used on line 1"]),
    ("jsonl", "j.jsonl", '{"id": "a", "turns": [{"role": "user", "text": "hi"}]}\n' + long_line + "\n", 2,
     ["characters long"]),
]


@pytest.mark.parametrize(("kind", "name", "content", "line", "words"), BROKEN)
def test_broken_file_names_file_and_line_and_writes_nothing(tmp_path, kind, name, content, line, words):
    path = write(tmp_path / name, content)
    with pytest.raises(CommandError) as error:
        run_import(kind, str(path))
    message = str(error.value)
    assert message.startswith(f"{path}, line {line}: "), message
    for word in words:
        assert word in message, message
    assert_nothing_written()


def pfg_folder(tmp_path, dialog: str, info: str | None) -> Path:
    folder = tmp_path / "pfg"
    write(folder / "full_dialog.csv", dialog)
    if info is not None:
        write(folder / "full_info.csv", info)
    return folder


PFG_INFO = "B2,B3,B4,age.x,sex.x,care.x\nd1,u1,0,30.0,Female,4.666666667\nd1,u2,1,41.0,Male,5.0\n"


def test_pfg_turns_join_sentences_of_one_turn(tmp_path):
    dialog = (
        ",Unit,Turn,B4,B2\n0,Hello there.,0,0,d1\n1,Have you heard of Save the Children?,0,0,d1\n"
        "2,Hi. No.,0,1,d1\n3,They help kids.,1,0,d1\n4,Nice.,1,1,d1\n"
    )
    report = run_import("pfg", str(pfg_folder(tmp_path, dialog, PFG_INFO)), "--split", "test")
    assert report == {
        "dataset": "pfg", "split": "test", "conversations": 1, "samples": 1, "skipped_lines": 0, "merged_lines": 1,
    }
    conversation = Conversation.objects.get(source_id="d1")
    assert conversation.turns[0]["text"] == "Hello there. Have you heard of Save the Children?"
    assert conversation.agent_persona == "age: 30.0, sex: Female, care: 4.67"
    assert conversation.user_persona == "age: 41.0, sex: Male, care: 5.0"
    assert conversation.samples.get().source_line == 5


@pytest.mark.parametrize(
    ("dialog", "info", "file", "line", "words"),
    [
        (",Unit,Turn,B4,B2\n0,Hi,0,0,d1\n", None, "full_info.csv", None, ["missing"]),
        (",Unit,Turn,B2\n0,Hi,0,d1\n", PFG_INFO, "full_dialog.csv", 1, ["missing column", "'B4'"]),
        (",Unit,Turn,B4,B2\n0,Hi,0,0,d1\n1,Hello,0,persuadee,d1\n", PFG_INFO, "full_dialog.csv", 3, ["B4"]),
        (",Unit,Turn,B4,B2\n0,Hi,0,0,d1\n", "B2,B3,B4\nd1,u1,0\n", "full_info.csv", 1, ["'*.x'"]),
    ],
)
def test_broken_pfg_folder(tmp_path, dialog, info, file, line, words):
    folder = pfg_folder(tmp_path, dialog, info)
    with pytest.raises(CommandError) as error:
        run_import("pfg", str(folder))
    where = f"{folder / file}, line {line}: " if line else f"{folder / file}: "
    assert str(error.value).startswith(where), str(error.value)
    for word in words:
        assert word in str(error.value)
    assert_nothing_written()
