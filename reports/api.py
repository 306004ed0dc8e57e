"""GET /api/studies/{slug}/report/: the agreement report as JSON, for staff."""
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Study
from common.permissions import IsStaff

from .build import min_confidence_parse, report_build


class StudyReportView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        parameters=[OpenApiParameter("min_confidence", OpenApiTypes.INT, description="1-5; the study's default when absent")],
        responses={200: OpenApiTypes.OBJECT},
        summary="Agreement report of a study (staff only)",
    )
    def get(self, request, slug: str):
        study = get_object_or_404(Study, slug=slug)
        try:
            min_confidence = min_confidence_parse(value=request.query_params.get("min_confidence"), study=study)
        except ValueError as exc:
            return Response({"min_confidence": [str(exc)]}, status=400)
        return Response(report_build(study=study, min_confidence=min_confidence))
