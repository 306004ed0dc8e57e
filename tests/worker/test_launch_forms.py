"""Launch forms, the pipeline plan and `manage.py train` read GRAG's settings from GRAGConfig alone."""
import dataclasses

import pytest

from modeling.grag.config import GRAGConfig, launch_fields
from worker.forms import PipelineForm, TrainForm
from worker.pipeline import PipelinePlan


def test_every_launch_setting_has_help_and_a_bound_in_the_dataclass():
    names = [f.name for f in launch_fields()]
    assert {"alpha", "beta", "lr", "epochs", "max_steps", "batch_size"} <= set(names)
    for spec in launch_fields():
        assert spec.metadata["help"].strip(), spec.name


@pytest.mark.parametrize("form_class", [TrainForm, PipelineForm])
@pytest.mark.parametrize("name", ["alpha", "beta", "lr"])
def test_form_fields_take_default_and_help_from_the_config(form_class, name):
    spec = {f.name: f for f in dataclasses.fields(GRAGConfig)}[name]
    field = form_class.base_fields[name]
    assert field.initial == spec.default
    assert field.help_text == spec.metadata["help"]
    assert field.min_value == spec.metadata["min"]


def test_the_pipeline_plan_defaults_are_the_configs():
    plan = PipelinePlan(dataset="demo")
    defaults = GRAGConfig()
    assert (plan.alpha, plan.beta, plan.lr) == (defaults.alpha, defaults.beta, defaults.lr)


@pytest.mark.django_db
def test_a_value_the_config_refuses_is_a_form_error_naming_it():
    form = TrainForm(data={"method": "postgrag", "backbone": "smollm2", "epochs": 1, "batch_size": 8, "lr": 1e-4,
                           "alpha": -1, "beta": 0.01})
    assert not form.is_valid()
    assert "alpha" in form.errors  # the bound from the dataclass metadata, next to the field


def test_train_command_help_shows_the_configs_defaults(capsys):
    from django.core.management import call_command

    with pytest.raises(SystemExit):
        call_command("train", "--help")
    out = " ".join(capsys.readouterr().out.split())
    assert f"(default {GRAGConfig().alpha})" in out
    assert GRAGConfig.__dataclass_fields__["beta"].metadata["help"] in out
