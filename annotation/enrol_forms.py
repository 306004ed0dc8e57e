"""Forms of crowd studies (issue 21): the join page, the staff's link and crowd-settings forms."""
from django import forms

from common.forms import SingleValueFieldsMixin

from .enrolment_models import DISPLAY_NAME_MAX, CrowdSettings, StudyLink


class EnrolForm(SingleValueFieldsMixin, forms.Form):
    """The volunteer's display name (the service cleans it: ``services.enrolment.display_name_clean``)."""

    display_name = forms.CharField(
        max_length=DISPLAY_NAME_MAX * 4, strip=False,  # the service says "at most 60" after normalising
        help_text="What the study's staff see; no e-mail address or password is needed.",
    )


class StudyLinkForm(SingleValueFieldsMixin, forms.ModelForm):
    class Meta:
        model = StudyLink
        fields = ["label", "max_participants", "expires_at"]
        labels = {"max_participants": "Cap on participants", "expires_at": "Expires at (UTC)"}
        help_texts = {"max_participants": "Empty: no cap.", "expires_at": "Empty: never. Format 2026-12-31 18:00."}


class CrowdSettingsForm(SingleValueFieldsMixin, forms.ModelForm):
    class Meta:
        model = CrowdSettings
        fields = [
            "items_per_participant", "minutes_per_participant", "completion_code", "screenout_code",
            "left_work_counts", "close_when_complete", "onboarding", "onboarding_items", "onboarding_threshold",
        ]
