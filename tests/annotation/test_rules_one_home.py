"""Rules with one home: the confidence scale and the editable study settings are read from one place."""
import pytest
from django.core.exceptions import ValidationError

from annotation import models
from annotation.forms import CONFIDENCES
from annotation.serializers import AnswerSerializer, StudyUpdateSerializer
from annotation.services import STUDY_EDITABLE


def test_the_rating_forms_and_api_offer_exactly_the_models_scale():
    scale = list(range(models.CONFIDENCE_MIN, models.CONFIDENCE_MAX + 1))
    assert [value for value, _label in CONFIDENCES] == scale
    field = AnswerSerializer().fields["confidence"]
    assert (field.min_value, field.max_value) == (models.CONFIDENCE_MIN, models.CONFIDENCE_MAX)


@pytest.mark.parametrize("value,ok", [(1, True), (5, True), (0, False), (6, False), (True, False), (2.0, False)])
def test_confidence_in_scale(value, ok):
    assert models.confidence_in_scale(value) is ok


@pytest.mark.django_db
def test_a_study_minimum_confidence_outside_the_scale_fails_model_validation():
    study = models.Study(slug="s", baseline_name="b", challenger_name="c", min_confidence=models.CONFIDENCE_MAX + 1)
    with pytest.raises(ValidationError, match="min_confidence"):
        study.full_clean()


def test_the_api_edits_exactly_what_the_service_accepts():
    assert list(StudyUpdateSerializer.Meta.fields) == [*STUDY_EDITABLE, "questions"]
