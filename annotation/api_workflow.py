"""The annotator's workflow in the API (issue 21): earlier items and their answers, skip, flag,
instructions; and the staff's flags.

Same rules as ``annotation.api``: annotators reach only their own studies and items (404 for
anything else), bad input is a 400 naming the field, a request the item's or study's state rules
out is a 409 with the reason. Blinding holds: annotators see items only as ``item_payload``
(texts under A/B, the opaque id), never a system name, a side or a database id.
"""
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from common.permissions import IsStaff

from . import selectors, services, workflow_selectors
from .api import _annotator_study, _error, _staff_study
from .models import COMMENT_MAX_CHARS, Assignment, Flag
from .serializers import AnswerSerializer, ErrorSerializer, ItemPayloadSerializer, ProgressSerializer


class MyItemSerializer(serializers.Serializer):
    item = serializers.CharField(help_text="Opaque item id.")
    number = serializers.IntegerField(help_text="1 for the first item you were given.")
    status = serializers.ChoiceField(choices=["completed", "skipped"])
    skip_reason = serializers.CharField(allow_blank=True)
    snippet = serializers.CharField(allow_blank=True, help_text="The last user turn, shortened.")


class MyItemDetailSerializer(ItemPayloadSerializer):
    status = serializers.ChoiceField(choices=Assignment.Status.values)
    skip_reason = serializers.CharField(allow_blank=True)
    answers = AnswerSerializer(many=True, help_text="Your current answers, as you gave them (A/B/S).")
    comment = serializers.CharField(allow_blank=True)
    editable = serializers.BooleanField(help_text="Whether you can still change the answers (study open, not skipped).")


class SkipSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=Assignment.SkipReason.values)


class SkipResultSerializer(serializers.Serializer):
    item = serializers.CharField()
    status = serializers.CharField()
    reason = serializers.CharField()
    progress = ProgressSerializer()


class FlagSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=COMMENT_MAX_CHARS, help_text="What is wrong with the item.")


class FlagResultSerializer(serializers.Serializer):
    item = serializers.CharField()
    comment = serializers.CharField()


class StaffFlagSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_key = serializers.CharField()
    item = serializers.CharField()
    annotator = serializers.CharField()
    comment = serializers.CharField()
    created_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    resolved_by = serializers.CharField(allow_null=True)


class InstructionsConfirmSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The instructions version you confirmed.")


def _body(request) -> dict:
    return request.data if isinstance(request.data, dict) else {}


class MyItemsView(APIView):
    @extend_schema(responses={200: MyItemSerializer(many=True), 404: ErrorSerializer},
                   summary="Your rated and skipped items, in the order you were given them", tags=["annotate"])
    def get(self, request, slug: str):
        study = _annotator_study(request, slug)
        rows = workflow_selectors.annotator_items(study=study, annotator=request.user)
        return Response(MyItemSerializer(rows, many=True).data)


class MyItemDetailView(APIView):
    @extend_schema(responses={200: MyItemDetailSerializer, 404: ErrorSerializer},
                   summary="One of your items with your current answers (change them with POST .../ratings/)",
                   tags=["annotate"])
    def get(self, request, slug: str, item: str):
        study = _annotator_study(request, slug)
        assignment = selectors.assignment_for_annotator(study=study, annotator=request.user, public_id=item)
        if assignment is None:
            raise Http404("No such item among yours.")
        current = selectors.assignment_current_answers(assignment=assignment)
        body = {
            **selectors.item_payload(assignment=assignment),
            "status": assignment.status, "skip_reason": assignment.skip_reason,
            "answers": [{"question": q, **a} for q, a in sorted(current.items())],
            "comment": workflow_selectors.assignment_current_comment(assignment=assignment),
            "editable": study.is_open and assignment.status != Assignment.Status.SKIPPED,
        }
        return Response(MyItemDetailSerializer(body).data)


class ItemSkipView(APIView):
    @extend_schema(
        request=SkipSerializer,
        responses={200: SkipResultSerializer, 400: ErrorSerializer, 404: ErrorSerializer,
                   409: OpenApiResponse(ErrorSerializer, description="Already rated, or the study is closed.")},
        summary="Skip one of your items with a reason: it goes to another annotator", tags=["annotate"],
    )
    def post(self, request, slug: str, item: str):
        study = _annotator_study(request, slug)
        reason = _body(request).get("reason")
        try:
            skipped = services.assignment_skip(study=study, annotator=request.user, public_id=item,
                                               reason=reason if isinstance(reason, str) else "")
        except (services.StudyClosed, services.ItemConflict) as exc:
            return _error(exc.errors, status.HTTP_409_CONFLICT)
        except services.RatingInvalid as exc:
            return _error(exc.errors)
        if skipped is None:
            raise Http404("No such item among yours.")
        return Response({"item": item, "status": skipped.status, "reason": skipped.skip_reason,
                         "progress": selectors.annotator_progress(study=study, annotator=request.user)})


class ItemFlagView(APIView):
    @extend_schema(
        request=FlagSerializer,
        responses={201: FlagResultSerializer, 400: ErrorSerializer, 404: ErrorSerializer,
                   409: OpenApiResponse(ErrorSerializer, description="The study is closed, you are a participant "
                                        "no longer taking part, or your earlier report of the item is still open.")},
        summary="Report a problem with one of your items to the study's staff", tags=["annotate"],
    )
    def post(self, request, slug: str, item: str):
        study = _annotator_study(request, slug)
        try:
            flag = services.flag_create(study=study, annotator=request.user, public_id=item,
                                        comment=_body(request).get("comment"))
        except (services.StudyClosed, services.ItemConflict) as exc:
            return _error(exc.errors, status.HTTP_409_CONFLICT)
        except services.RatingInvalid as exc:
            return _error(exc.errors)
        if flag is None:
            raise Http404("No such item among yours.")
        return Response({"item": item, "comment": flag.comment}, status=status.HTTP_201_CREATED)


class InstructionsConfirmView(APIView):
    @extend_schema(request=None, responses={200: InstructionsConfirmSerializer, 404: ErrorSerializer},
                   summary="Confirm that you read the study's current instructions", tags=["annotate"])
    def post(self, request, slug: str):
        study = _annotator_study(request, slug)
        confirmation = services.instructions_confirm(study=study, annotator=request.user)
        return Response({"version": confirmation.version})


class StaffFlagsView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        parameters=[OpenApiParameter("include_resolved", bool, description="Resolved flags too (default: open only).")],
        responses={200: StaffFlagSerializer(many=True), 400: ErrorSerializer, 404: ErrorSerializer},
        summary="Flags annotators raised on a study's items", tags=["staff"],
    )
    def get(self, request, slug: str):
        study = _staff_study(slug)
        raw = request.query_params.get("include_resolved", "false").lower()
        if raw not in ("true", "false", "1", "0"):
            return _error({"include_resolved": "true or false"})
        rows = workflow_selectors.study_flags(study=study, include_resolved=raw in ("true", "1"))
        return Response(StaffFlagSerializer(rows, many=True).data)


class StaffFlagResolveView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(request=None, responses={200: StaffFlagSerializer, 404: ErrorSerializer},
                   summary="Mark a flag resolved", tags=["staff"])
    def post(self, request, slug: str, flag: int):
        study = _staff_study(slug)
        found = Flag.objects.filter(pk=flag, item__study=study).first()
        if found is None:
            raise Http404("No such flag in this study.")
        services.flag_resolve(flag=found, by=request.user)
        row = next(r for r in workflow_selectors.study_flags(study=study, include_resolved=True) if r["id"] == found.pk)
        return Response(StaffFlagSerializer(row).data)
