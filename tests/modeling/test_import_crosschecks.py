"""Importers check the fields they do not keep (issue 16): a shifted or garbled row fails with
``FILE, line N: what was wrong`` and the import writes nothing.

Each case is a small file in the format's published layout, written here, that the importer
before these checks read without complaint (the EmpatheticDialogues one with speaker ids as
utterances).
"""
import pytest
from django.core.management import CommandError

from modeling.importers import PARSERS
from modeling.models import Conversation, Dataset, Sample
from tests.modeling.test_import_formats import (
    ED_HEADER,
    ED_ROWS,
    PFG_INFO,
    SPC_GOOD,
    SPC_HEADER,
    pfg_folder,
    run_import,
    write,
)

pytestmark = pytest.mark.django_db

# A row of ED_ROWS' second conversation whose prompt holds a raw comma: every later column
# moves one to the right, so speaker_idx reads " it was 3am." and utterance reads "303".
ED_SHIFTED_PROMPT = "hit:3_conv:6,1,afraid,I heard a noise downstairs, it was 3am.,303,Last night I heard someone.,,\n"
# The same with a prompt whose tail after the comma is a number: speaker_idx " 3" still parses,
# so the self-evaluation column (now holding the utterance) gives the shift away.
ED_SHIFTED_NUMBER = "hit:3_conv:6,1,afraid,A noise at night, 3,303,Last night I heard someone.,5|5|5_2|2|5,\n"

CASES = [
    # (kind, file name, content, line, words the message must contain)
    ("ed", "valid.csv", ED_HEADER + ED_SHIFTED_PROMPT, 2, ["speaker_idx must be an integer", "' it was 3am.'", "_comma_"]),
    ("ed", "valid.csv", ED_HEADER + ED_SHIFTED_NUMBER, 2, ["selfeval", "'Last night I heard someone.'", "shifts"]),
    # Only the third row is shifted: its prompt differs from the conversation's first row.
    ("ed", "valid.csv", ED_HEADER + ED_ROWS.splitlines(keepends=True)[0] + ED_ROWS.splitlines(keepends=True)[1]
     + "hit:1_conv:2,3,proud,My daughter finished her first marathon_comma_ all 42 km.x,101,Hi,,\n", 4,
     ["prompt", "differs", "line 2"]),
    # The listener (202) speaks twice in a row: the parity-based roles would be wrong.
    ("ed", "valid.csv", ED_HEADER + "hit:1_conv:2,1,proud,p,101,Hello,,\nhit:1_conv:2,2,proud,p,101,Again me,,\n", 3,
     ["speaker_idx 101", "alternation"]),
    # A lost row: utterance 3 follows 1.
    ("ed", "valid.csv", ED_HEADER + "hit:1_conv:2,1,proud,p,101,Hello,,\nhit:1_conv:2,3,proud,p,101,Again,,\n", 3,
     ["utterance_idx 3", "should be 2"]),
    # SPC: a conversation in the agent's persona column, an empty persona next to a conversation.
    ("spc", "s_test.csv", SPC_HEADER + SPC_GOOD + '"I run.","User 1: Hi\nUser 2: Hello","I swim."\n', 4,
     ["'user 2 personas'", "conversation line", "'User 1: Hi'", "shifted"]),
    ("spc", "s_test.csv", SPC_HEADER + '"I fish.","","User 1: Hi\nUser 2: Hello"\n', 2, ["'user 2 personas' is empty"]),
    # ConvAI2: a persona line inside the utterances, silence mid-dialogue, a reward that is text,
    # a reply missing from its own candidates, a stray fifth field.
    ("convai2", "valid_x.txt", "1 your persona: i sail.\n2 hi\thello\n3 your persona: i fish.\n", 3, ["persona line after"]),
    ("convai2", "valid_x.txt", "1 your persona: i sail.\n2 hi\thello\n3 __SILENCE__\tanyone?\n", 3, ["__SILENCE__"]),
    ("convai2", "valid_x.txt", "1 your persona: i sail.\n2 hi\thello\tgreat\n", 2, ["reward", "'great'"]),
    ("convai2", "valid_x.txt", "1 your persona: i sail.\n2 hi\thello\t\tbye|see you\n", 2, ["'hello'", "2 candidates"]),
    ("convai2", "valid_x.txt", "1 your persona: i sail.\n2 hi\thello\t\thello|bye\textra\n", 2, ["5 tab-separated"]),
    # jsonl names every field, so a value in the wrong field is a type error on its line.
    ("jsonl", "j.jsonl", ('{"id": "a", "turns": [{"role": "user", "text": "hi"}]}\n'
                          '{"id": "b", "agent_persona": {"text": "hi"}, "turns": []}\n'), 2, ["'agent_persona' must be a string"]),
    ("jsonl", "j.jsonl", '{"id": "a", "turns": [{"role": "user", "text": "hi", "generic": 3}]}\n', 1,
     ["turns[0].generic must be a string"]),
]


def nothing_written():
    return not (Dataset.objects.exists() or Conversation.objects.exists() or Sample.objects.exists())


@pytest.mark.parametrize(("kind", "name", "content", "line", "words"), CASES)
def test_a_shifted_row_fails_with_file_and_line_and_writes_nothing(tmp_path, kind, name, content, line, words):
    path = write(tmp_path / name, content)
    with pytest.raises(CommandError) as error:
        run_import(kind, str(path))
    message = str(error.value)
    assert message.startswith(f"{path}, line {line}: "), message
    for word in words:
        assert word in message, message
    assert nothing_written()


def test_a_shifted_row_after_good_ones_writes_nothing(tmp_path):
    """The bad row comes after a whole good conversation: still nothing of the file is stored."""
    path = write(tmp_path / "valid.csv", ED_HEADER + ED_ROWS.replace(
        "hit:3_conv:6,3,afraid,I heard a noise downstairs at 3am.,303,",
        "hit:3_conv:6,3,afraid,I heard a noise downstairs, at 3am.,303,",
    ))
    with pytest.raises(CommandError, match=r"valid\.csv, line 8: speaker_idx must be an integer"):
        run_import("ed", str(path))
    assert nothing_written()


def test_the_checks_leave_good_files_alone(tmp_path):
    """The published layouts, with the fields the checks read, still import as before."""
    assert len(PARSERS["ed"](write(tmp_path / "valid.csv", ED_HEADER + ED_ROWS)).conversations) == 2
    convai2 = "1 your persona: i sail.\n2 __SILENCE__\thello\t0\thi|hello\n3 how are you?\tgood\t\t\n"
    parsed = PARSERS["convai2"](write(tmp_path / "valid_x.txt", convai2))
    assert [t.text for t in parsed.conversations[0].turns] == ["hello", "how are you?", "good"]
    dialog = ",Unit,Turn,B4,B2\n0,Hi.,0,0,d1\n1,Hey.,0,1,d1\n2,Donate?,1,0,d1\n3,Sure.,1,1,d1\n"
    assert len(PARSERS["pfg"](pfg_folder(tmp_path, dialog, PFG_INFO)).conversations) == 1


@pytest.mark.parametrize(
    ("dialog", "info", "file", "line", "words"),
    [
        # The row counter says a row of d1 is missing (or the file's rows were reordered).
        (",Unit,Turn,B4,B2\n0,Hi,0,0,d1\n2,Hello,0,1,d1\n", PFG_INFO, "full_dialog.csv", 3, ["'2'", "expected 1"]),
        # Turn going back within a dialogue (rows out of order or mixed up).
        (",Unit,Turn,B4,B2\n0,Hi,0,0,d1\n1,Hello,1,1,d1\n2,Again,0,0,d1\n", PFG_INFO, "full_dialog.csv", 4, ["goes back"]),
        (",Unit,Turn,B4,B2\n0,Hi,2,0,d1\n", PFG_INFO, "full_dialog.csv", 2, ["starts at Turn 2"]),
        # full_info.csv: a score column holding a category, a second row for one role.
        (",Unit,Turn,B4,B2\n0,Hi,0,0,d1\n", "B2,B3,B4,age.x,sex.x,care.x\nd1,u1,0,Female,30.0,4.5\n",
         "full_info.csv", 2, ["age.x must be a number", "'Female'"]),
        (",Unit,Turn,B4,B2\n0,Hi,0,0,d1\n", PFG_INFO + "d1,u3,0,22.0,Male,1.0\n", "full_info.csv", 4,
         ["second row for dialogue d1 role 0", "line 2"]),
    ],
)
def test_pfg_checks_the_columns_it_does_not_keep(tmp_path, dialog, info, file, line, words):
    folder = pfg_folder(tmp_path, dialog, info)
    with pytest.raises(CommandError) as error:
        run_import("pfg", str(folder))
    assert str(error.value).startswith(f"{folder / file}, line {line}: "), str(error.value)
    for word in words:
        assert word in str(error.value), str(error.value)
    assert nothing_written()
