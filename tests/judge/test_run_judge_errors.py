"""run_judge and judge_run_create refuse bad input with a message that says what to do (no model load)."""
import pytest
from django.core.management import CommandError, call_command

from annotation.models import Item
from judge.services import JudgeRunError, judge_run_create

from .conftest import study_make

pytestmark = pytest.mark.django_db


def test_run_judge_refuses_bad_input_clearly(spc_pairs, django_user_model):
    study_make(spc_pairs[:1], slug="bad-input")
    with pytest.raises(CommandError, match="No study with slug 'nope'"):
        call_command("run_judge", "nope", "--model", "smollm2")
    with pytest.raises(CommandError, match="is not on this machine"):
        call_command("run_judge", "bad-input", "--model", "no-such-org/no-such-model")
    judge_run_create(study=Item.objects.get().study, model_id="smollm2", name="LLM-x")
    with pytest.raises(JudgeRunError, match="already exists"):
        judge_run_create(study=Item.objects.get().study, model_id="other-model", name="LLM-x")
    django_user_model.objects.create_user(username="alice")
    with pytest.raises(CommandError, match="human annotator"):
        call_command("run_judge", "bad-input", "--model", "smollm2", "--name", "alice")
    with pytest.raises(CommandError, match="limit must be a positive"):
        call_command("run_judge", "bad-input", "--model", "smollm2", "--limit", "0")
