"""Staff API of crowd studies (issue 21): links, crowd settings and the per-participant export.

Under ``/api/staff/studies/<slug>/``, staff only like the rest of the staff API.
"""
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from common.permissions import IsStaff

from .enrol_views import link_url
from .enrolment_models import CrowdSettings, StudyLink
from .models import Study
from .participants import participant_rows
from .serializers import ErrorSerializer
from .services import StudyFieldError
from .services.links import crowd_settings_of, crowd_settings_update, link_create, link_set_active, links_with_usage


class StudyLinkSerializer(serializers.ModelSerializer):
    participants = serializers.IntegerField(source="participants_count", read_only=True, default=0)
    url = serializers.SerializerMethodField()

    class Meta:
        model = StudyLink
        fields = ["id", "token", "url", "label", "max_participants", "expires_at", "is_active", "participants",
                  "created_at"]
        read_only_fields = ["id", "token", "url", "is_active", "participants", "created_at"]

    def get_url(self, link: StudyLink) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(link_url(link)) if request else link_url(link)


class StudyLinkActiveSerializer(serializers.Serializer):
    is_active = serializers.BooleanField()


class CrowdSettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = CrowdSettings
        exclude = ["id", "study"]


class ParticipantRowSerializer(serializers.Serializer):
    participant = serializers.CharField()
    display_name = serializers.CharField()
    prolific_pid = serializers.CharField(allow_blank=True)
    prolific_study_id = serializers.CharField(allow_blank=True)
    prolific_session_id = serializers.CharField(allow_blank=True)
    link = serializers.CharField()
    status = serializers.CharField()
    counted = serializers.BooleanField(help_text="Whether their ratings count in the aggregate.")
    enrolled_at = serializers.CharField()
    ended_at = serializers.CharField(allow_blank=True)
    items_done = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Items the participant skipped.")
    seconds_rating = serializers.FloatField(help_text="Sum of reservation-to-submit times, seconds.")
    minutes_enrolled = serializers.FloatField()
    onboarding_correct = serializers.IntegerField(allow_null=True)
    onboarding_graded = serializers.IntegerField(allow_null=True)
    gold_pass_rate = serializers.FloatField(allow_null=True)
    gold_checks = serializers.IntegerField()
    trap_pass_rate = serializers.FloatField(allow_null=True)
    trap_checks = serializers.IntegerField()
    consistency = serializers.FloatField(allow_null=True)
    repeats = serializers.IntegerField()
    too_fast = serializers.IntegerField()
    flags = serializers.ListField(child=serializers.CharField())


def _study(slug: str) -> Study:
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        raise Http404("No such study.")
    return study


def _field_error(exc: StudyFieldError) -> Response:
    return Response({"detail": str(exc), "errors": {exc.field: str(exc)}}, status=status.HTTP_400_BAD_REQUEST)


class StaffLinksView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses=StudyLinkSerializer(many=True), summary="A study's enrolment links with their usage",
                   tags=["staff"])
    def get(self, request, slug: str):
        links = links_with_usage(study=_study(slug))
        return Response(StudyLinkSerializer(links, many=True, context={"request": request}).data)

    @extend_schema(request=StudyLinkSerializer, responses={201: StudyLinkSerializer, 400: ErrorSerializer},
                   summary="Create an enrolment link (optional cap and expiry)", tags=["staff"])
    def post(self, request, slug: str):
        study = _study(slug)
        ser = StudyLinkSerializer(data=request.data)
        if not ser.is_valid():
            return Response({"detail": "invalid link", "errors": ser.errors}, status=400)
        try:
            link = link_create(study=study, created_by=request.user, **ser.validated_data)
        except StudyFieldError as exc:
            return _field_error(exc)
        link.participants_count = 0
        return Response(StudyLinkSerializer(link, context={"request": request}).data, status=status.HTTP_201_CREATED)


class StaffLinkDetailView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(request=StudyLinkActiveSerializer, responses={200: StudyLinkSerializer, 400: ErrorSerializer},
                   summary="Deactivate or reactivate an enrolment link", tags=["staff"])
    def patch(self, request, slug: str, pk: int):
        link = StudyLink.objects.filter(pk=pk, study__slug=slug).first()
        if link is None:
            raise Http404("No such link.")
        ser = StudyLinkActiveSerializer(data=request.data)
        if not ser.is_valid():
            return Response({"detail": "send {\"is_active\": true|false}", "errors": ser.errors}, status=400)
        link = link_set_active(link=link, is_active=ser.validated_data["is_active"])
        link.participants_count = link.participants.count()
        return Response(StudyLinkSerializer(link, context={"request": request}).data)


class StaffCrowdSettingsView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses=CrowdSettingsSerializer, summary="A study's crowd settings", tags=["staff"])
    def get(self, request, slug: str):
        return Response(CrowdSettingsSerializer(crowd_settings_of(study=_study(slug))).data)

    @extend_schema(request=CrowdSettingsSerializer, responses={200: CrowdSettingsSerializer, 400: ErrorSerializer},
                   summary="Change a study's crowd settings", tags=["staff"])
    def patch(self, request, slug: str):
        study = _study(slug)
        ser = CrowdSettingsSerializer(crowd_settings_of(study=study), data=request.data, partial=True)
        if not ser.is_valid():
            return Response({"detail": "invalid crowd settings", "errors": ser.errors}, status=400)
        try:
            crowd = crowd_settings_update(study=study, **ser.validated_data)
        except StudyFieldError as exc:
            return _field_error(exc)
        return Response(CrowdSettingsSerializer(crowd).data)


class StaffParticipantsView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses=ParticipantRowSerializer(many=True),
                   summary="Per-participant work for approval and bonuses", tags=["staff"])
    def get(self, request, slug: str):
        return Response(ParticipantRowSerializer(participant_rows(study=_study(slug)), many=True).data)
