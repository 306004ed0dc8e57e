"""The annotation API (Django REST Framework): views parse, call one service or selector, render.

Annotators reach only the studies they were given; any other study or item answers 404, so
the API does not even confirm that it exists. Staff routes live under ``/api/staff/``.
"""
from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from common.permissions import IsStaff
from common.security import login_locked_response

from . import selectors, services
from .models import Study
from .serializers import (
    AnnotatorAddSerializer,
    AnnotatorQualitySerializer,
    AnnotatorSerializer,
    AnnotatorStudySerializer,
    AuthorTellSerializer,
    ErrorSerializer,
    ItemPayloadSerializer,
    ItemStateSerializer,
    RatingSubmitResultSerializer,
    RatingSubmitSerializer,
    StudySerializer,
    StudyUpdateSerializer,
    TokenRequestSerializer,
    TokenSerializer,
    VoteRowSerializer,
)
from .tokens import ExpiringTokenAuthentication, token_expires, token_issue, tokens_revoke

MAX_ANSWERS = 100  # more answers than any study has questions: refuse rather than loop


def _error(errors: dict[str, str], code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
    return Response({"detail": detail, "errors": errors}, status=code)


def _annotator_study(request, slug: str) -> Study:
    study = selectors.study_for_annotator(user=request.user, slug=slug)
    if study is None:
        raise Http404("No such study among yours.")
    return study


def _staff_study(slug: str) -> Study:
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        raise Http404("No such study.")
    return study


def _answers_parse(data) -> list[services.Answer]:
    """Turn the request body into Answers; shape errors name the field (answers[i].confidence)."""
    if not isinstance(data, dict) or not isinstance(data.get("answers"), list):
        raise services.RatingInvalid({"answers": 'send {"answers": [{"question", "choice", "confidence"}, ...]}'})
    raw = data["answers"]
    if len(raw) > MAX_ANSWERS:
        raise services.RatingInvalid({"answers": f"at most {MAX_ANSWERS} answers"})
    answers, errors = [], {}
    for i, el in enumerate(raw):
        if not isinstance(el, dict):
            errors[f"answers[{i}]"] = 'each answer must be {"question", "choice", "confidence"}'
            continue
        question = el.get("question")
        if not isinstance(question, str) or not question:
            errors[f"answers[{i}].question"] = "give the question key, e.g. q1"
            continue
        choice = el.get("choice")
        choice = choice.strip().upper() if isinstance(choice, str) else ""
        confidence = el.get("confidence")
        if isinstance(confidence, str) and confidence.strip().isdigit():
            confidence = int(confidence)
        if isinstance(confidence, bool) or not isinstance(confidence, int):
            confidence = None  # rating_submit names it: "<q>.confidence"
        answers.append(services.Answer(question=question, choice=choice, confidence=confidence))
    if errors:
        raise services.RatingInvalid(errors)
    return answers


class TokenRateThrottle(ScopedRateThrottle):
    """Requests per client address to a view's ``throttle_scope``, at ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``.

    DRF's throttles copy the rates once, at import; this one reads them per request, so that a
    changed setting (``override_settings`` in a test) applies. The counts live in the Django
    cache (``CACHE_URL``). The address is REMOTE_ADDR, or the entry ``NUM_PROXIES`` from the end
    of X-Forwarded-For behind that many proxies.
    """

    @property
    def THROTTLE_RATES(self):  # noqa: N802 (the name DRF looks up)
        return api_settings.DEFAULT_THROTTLE_RATES


class TokenThrottled(Throttled):
    default_detail = "Too many token requests from this address."
    extra_detail_singular = "Try again in {wait} second."
    extra_detail_plural = "Try again in {wait} seconds."


class TokenView(APIView):
    """Exchange a username and password for an API token (POST); revoke your token (DELETE).

    Rate-limited per client address (``TOKEN_RATE``, default 10/minute), good and bad logins
    alike, against password guessing: past the limit it answers 429 with a JSON ``detail`` and a
    Retry-After header. Failed logins also count towards the login lockout that every login
    path shares (django-axes, per username and per address; see docs/security.md). A token
    expires ``TOKEN_TTL_HOURS`` after it was issued (``expires`` in the answer).
    """

    permission_classes = [AllowAny]
    authentication_classes = [ExpiringTokenAuthentication, SessionAuthentication]
    throttle_classes = [TokenRateThrottle]
    throttle_scope = "token"

    def perform_authentication(self, request):
        # POST logs in with a password: a stale Authorization header must not stand in its way.
        if request.method != "POST":
            super().perform_authentication(request)

    def get_throttles(self):
        return super().get_throttles() if self.request.method == "POST" else []

    def throttled(self, request, wait):
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.throttle_scope)
        raise TokenThrottled(wait=wait, detail=f"Too many token requests from this address (at most {rate}).")

    @extend_schema(
        request=TokenRequestSerializer,
        responses={200: TokenSerializer, 400: ErrorSerializer, 429: ErrorSerializer},
        summary="Get an API token",
        tags=["auth"],
    )
    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            return _error({"username": "send a username and a password"})
        # The Django request, not DRF's wrapper: django-axes marks it when the login is locked out.
        django_request = request._request
        user = authenticate(django_request, username=username, password=password)
        if getattr(django_request, "axes_locked_out", False):
            return login_locked_response(django_request)
        if user is None or not user.is_active:
            return _error({"password": "username or password is wrong"})
        # A token is a login: the signal clears this username's and address's failed-login count
        # (AXES_RESET_ON_SUCCESS) and records last_login, as the HTML login does.
        user_logged_in.send(sender=user.__class__, request=django_request, user=user)
        token = token_issue(user=user)
        return Response({"token": token.key, "expires": token_expires(token)})

    @extend_schema(
        request=None, responses={204: OpenApiResponse(description="The token is revoked."), 401: ErrorSerializer},
        summary="Revoke your API token (the one sent, or, from a logged-in session, the user's)", tags=["auth"],
    )
    def delete(self, request):
        if not request.user.is_authenticated:
            return _error({"token": "send the token to revoke as Authorization: Token <key>"}, status.HTTP_401_UNAUTHORIZED)
        tokens_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class StudyListView(APIView):
    @extend_schema(responses=AnnotatorStudySerializer(many=True), summary="Your studies", tags=["annotate"])
    def get(self, request):
        rows = [
            {
                "slug": s.slug, "title": s.title, "instructions": s.instructions,
                "instructions_version": s.instructions_version, "is_open": s.is_open,
                "progress": selectors.annotator_progress(study=s, annotator=request.user),
            }
            for s in selectors.annotator_studies(user=request.user)
        ]
        return Response(AnnotatorStudySerializer(rows, many=True).data)


class StudyDetailView(APIView):
    @extend_schema(responses={200: AnnotatorStudySerializer, 404: ErrorSerializer}, summary="One of your studies", tags=["annotate"])
    def get(self, request, slug: str):
        s = _annotator_study(request, slug)
        row = {
            "slug": s.slug, "title": s.title, "instructions": s.instructions,
            "instructions_version": s.instructions_version, "is_open": s.is_open,
            "progress": selectors.annotator_progress(study=s, annotator=request.user),
        }
        return Response(AnnotatorStudySerializer(row).data)


class NextItemView(APIView):
    @extend_schema(
        request=None,
        responses={
            200: ItemPayloadSerializer,
            204: OpenApiResponse(description="Nothing left for you in this study."),
            404: ErrorSerializer,
        },
        summary="Reserve and return your next item",
        tags=["annotate"],
    )
    def post(self, request, slug: str):
        study = _annotator_study(request, slug)
        assignment = services.assignment_next(study=study, annotator=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        # The payload as item_payload made it (blinded: its keys are ItemPayloadSerializer's, the
        # schema); running it through the serializer again cost 0.4 ms of CPU per request (issue 17).
        return Response(selectors.item_payload(assignment=assignment))


class RatingSubmitView(APIView):
    @extend_schema(
        request=RatingSubmitSerializer,
        responses={
            201: RatingSubmitResultSerializer,
            200: OpenApiResponse(RatingSubmitResultSerializer, description="The same answers again: nothing stored."),
            400: ErrorSerializer,
            404: ErrorSerializer,
            409: OpenApiResponse(ErrorSerializer, description="Your reservation expired and the item went to someone "
                                 "else, you skipped the item, or the study is closed."),
        },
        summary="Answer every question of an item, or change your answers to an earlier one",
        tags=["annotate"],
    )
    def post(self, request, slug: str, item: str):
        study = _annotator_study(request, slug)
        try:
            answers = _answers_parse(request.data)
            comment = request.data.get("comment")  # a dict: _answers_parse checked it
            found = services.rating_submit_for_item(study=study, annotator=request.user, public_id=item, answers=answers,
                                                    comment=comment)
        except (services.ReservationLost, services.StudyClosed, services.ItemConflict) as exc:
            return _error(exc.errors, status.HTTP_409_CONFLICT)
        except services.RatingInvalid as exc:
            return _error(exc.errors)
        if found is None:
            raise Http404("No such item among yours; ask for the next item first.")
        assignment, ratings = found
        stored = sum(r.is_new for r in ratings)
        body = {
            "item": assignment.item.public_id,
            "answers": [{"question": r.question, "choice": r.shown_choice, "confidence": r.confidence} for r in ratings],
            "comment": ratings[0].comment if ratings else "",
            "stored": stored,
            "progress": selectors.annotator_progress(study=study, annotator=request.user),
        }
        return Response(body, status=status.HTTP_201_CREATED if stored else status.HTTP_200_OK)


# --------------------------------------------------------------------------- staff


class StaffStudyListView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses=StudySerializer(many=True), summary="All studies", tags=["staff"])
    def get(self, request):
        return Response(StudySerializer(Study.objects.prefetch_related("questions"), many=True).data)

    @extend_schema(request=StudySerializer, responses={201: StudySerializer, 400: ErrorSerializer}, summary="Create a study", tags=["staff"])
    def post(self, request):
        ser = StudySerializer(data=request.data)
        if not ser.is_valid():
            return Response({"detail": "invalid study", "errors": ser.errors}, status=400)
        data = dict(ser.validated_data)
        items = data.pop("items", [])
        questions = data.pop("questions", None)
        try:
            with transaction.atomic():
                study, _n = services.study_create_with_items(items=items, **data)
                if questions:
                    services.study_update(study=study, questions=questions)
        except ValueError as exc:
            return _error({getattr(exc, "field", "items" if "items[" in str(exc) else "study"): str(exc)})
        return Response(StudySerializer(study).data, status=status.HTTP_201_CREATED)


class StaffStudyDetailView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses={200: StudySerializer, 404: ErrorSerializer}, summary="A study", tags=["staff"])
    def get(self, request, slug: str):
        return Response(StudySerializer(_staff_study(slug)).data)

    @extend_schema(request=StudyUpdateSerializer, responses={200: StudySerializer, 400: ErrorSerializer}, summary="Edit a study", tags=["staff"])
    def patch(self, request, slug: str):
        study = _staff_study(slug)
        ser = StudyUpdateSerializer(study, data=request.data, partial=True)
        if not ser.is_valid():
            return Response({"detail": "invalid change", "errors": ser.errors}, status=400)
        data = dict(ser.validated_data)
        questions = data.pop("questions", None)
        try:
            study = services.study_update(study=study, questions=questions, **data)
        except ValueError as exc:
            return _error({getattr(exc, "field", "study"): str(exc)})
        return Response(StudySerializer(study).data)


class StaffItemsView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses=ItemStateSerializer(many=True), summary="Items with their assignment state", tags=["staff"])
    def get(self, request, slug: str):
        return Response(ItemStateSerializer(selectors.study_items_state(study=_staff_study(slug)), many=True).data)


class StaffRatingsView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses=VoteRowSerializer(many=True), summary="Export current ratings (export_votes rows)", tags=["staff"])
    def get(self, request, slug: str):
        return Response(VoteRowSerializer(selectors.study_votes_rows(study=_staff_study(slug)), many=True).data)


class StaffQualityView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses=AnnotatorQualitySerializer(many=True), summary="Per-annotator quality control", tags=["staff"])
    def get(self, request, slug: str):
        return Response(AnnotatorQualitySerializer(selectors.annotator_quality(study=_staff_study(slug)), many=True).data)


class StaffAuthorTellsView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        responses=AuthorTellSerializer(many=True), summary="Responses that give their author away (check before opening)",
        tags=["staff"],
    )
    def get(self, request, slug: str):
        return Response(AuthorTellSerializer(selectors.study_author_tells(study=_staff_study(slug)), many=True).data)


class StaffAnnotatorsView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses=AnnotatorSerializer(many=True), summary="A study's annotators", tags=["staff"])
    def get(self, request, slug: str):
        users = _staff_study(slug).annotators.order_by("username")
        return Response(AnnotatorSerializer([{"username": u.username} for u in users], many=True).data)

    @extend_schema(
        request=AnnotatorAddSerializer, responses={201: AnnotatorSerializer, 400: ErrorSerializer},
        summary="Create an annotator, or add an existing non-staff account, to this study", tags=["staff"],
    )
    def post(self, request, slug: str):
        study = _staff_study(slug)
        ser = AnnotatorAddSerializer(data=request.data)
        if not ser.is_valid():
            return Response({"detail": "invalid annotator", "errors": ser.errors}, status=400)
        try:
            user = services.annotator_add(
                username=ser.validated_data["username"], password=ser.validated_data.get("password"), study=study
            )
        except ValueError as exc:
            return _error({getattr(exc, "field", "username"): str(exc)})
        return Response({"username": user.username}, status=status.HTTP_201_CREATED)
