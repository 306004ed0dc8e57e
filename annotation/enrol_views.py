"""Pages of crowd studies (issue 21): the join link, onboarding, the participant's end, staff links and export.

A participant's path: ``/join/<token>/`` (display name, or Prolific's ``PROLIFIC_PID``,
``STUDY_ID``, ``SESSION_ID``) -> instructions -> onboarding (when the study has one) -> items
-> the end page, which sends a Prolific participant to Prolific's completion URL with the
study's completion code (or the screen-out code). The views parse, call one service, render.
"""
from django.contrib import messages
from django.contrib.auth import login
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from common.csv_safe import csv_writer
from common.permissions import login_required_htmx, staff_required

from .enrol_forms import CrowdSettingsForm, EnrolForm, StudyLinkForm
from .enrolment_models import Participant, StudyLink
from .forms import RatingForm
from .models import Study
from .participants import PARTICIPANT_COLUMNS, participant_rows
from .selectors import item_payload
from .services import ParticipantInactive, RatingInvalid, StudyFieldError, instructions_confirmed
from .services.enrolment import (
    IN_PROGRESS,
    completion_url,
    participant_enrol,
    participant_leave,
    participant_of,
    participant_refresh,
    prolific_params,
    prolific_resume,
)
from .services.enrolment import participant_when_none_left as none_left_outcome
from .services.links import (
    EnrolmentRefused,
    crowd_settings_of,
    crowd_settings_update,
    link_create,
    link_refusal,
    link_set_active,
    link_urls,
    links_with_usage,
)
from .services.onboarding import onboarding_answer, onboarding_next

BACKEND = "django.contrib.auth.backends.ModelBackend"


def participant_next_url(participant: Participant) -> str:
    """Where a participant goes next: the items (instructions and onboarding come first there), or their end page."""
    if participant.status in IN_PROGRESS:
        return reverse("annotation:annotate", args=[participant.study.slug])
    return reverse("annotation:participant_end", args=[participant.study.slug])


def participant_redirect(request, study: Study):
    """For ``views.annotate``: a participant still in onboarding or no longer active is sent on; None otherwise."""
    participant = participant_of(user=request.user, study=study)
    if participant is None:
        return None
    participant = participant_refresh(participant=participant)
    if participant.status == Participant.Status.ONBOARDING:
        return _go(request, reverse("annotation:onboarding", args=[study.slug]))
    if participant.status != Participant.Status.ACTIVE:
        return _go(request, reverse("annotation:participant_end", args=[study.slug]))
    return None


def participant_when_none_left(request, study: Study):
    """For ``views._render_item``: a participant with no item: the wait page, their end page, or None.

    The rule is ``services.enrolment.participant_when_none_left``: wait while others hold the
    items they could take; finished (completion code) after at least one completed item;
    no_work (no code) otherwise. None (the "being prepared" page like any annotator, no code)
    when the study is closed before they completed anything."""
    participant = participant_of(user=request.user, study=study)
    if participant is None:
        return None
    outcome = none_left_outcome(participant=participant)
    if outcome == "wait":
        if request.htmx:  # the wait page is a page of its own, not a fragment of the item
            return HttpResponseClientRedirect(reverse("annotation:annotate", args=[study.slug]))
        return render(request, "annotation/enrol_wait.html", {"study": study, "participant": participant})
    if outcome == Participant.Status.ACTIVE:
        return None
    return _go(request, reverse("annotation:participant_end", args=[study.slug]))


def _go(request, url: str):
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _refused(request, exc: EnrolmentRefused, link: StudyLink | None = None):
    return render(request, "annotation/enrol_refused.html", {"message": str(exc), "link": link}, status=exc.status)


@require_http_methods(["GET", "POST"])
def enrol(request, token: str):
    """The study link: GET shows the start page, POST enrols (or resumes) and logs the participant in."""
    link = StudyLink.objects.select_related("study").filter(token=token).first()
    data = request.POST if request.method == "POST" else request.GET
    try:
        prolific = prolific_params(data)
    except EnrolmentRefused as exc:
        return _refused(request, exc, link)
    if link is not None and request.user.is_authenticated:
        mine = participant_of(user=request.user, study=link.study)
        if mine is not None and (not prolific or mine.prolific_pid == prolific["prolific_pid"]):
            return redirect(participant_next_url(mine))  # the same browser resumes
    form = EnrolForm(request.POST or None)
    if request.method == "POST":
        name = request.POST.get("display_name", "")
        if not prolific and not form.is_valid():
            return _enrol_page(request, link, form, prolific, status=400)
        try:
            participant, _created = participant_enrol(token=token, display_name=name, prolific=prolific)
        except EnrolmentRefused as exc:
            if exc.field == "display_name":
                form.add_error("display_name", str(exc))
                return _enrol_page(request, link, form, prolific, status=400)
            return _refused(request, exc, link)
        login(request, participant.user, backend=BACKEND)
        return redirect(participant_next_url(participant))
    # A new browser: the link must be usable before anybody resumes through it (``prolific_resume``).
    try:
        if (refusal := link_refusal(link=link)) is not None:
            raise refusal
        resumable = bool(prolific) and prolific_resume(link=link, prolific=prolific) is not None
        if not resumable and link.max_participants is not None and link.participants.count() >= link.max_participants:
            raise EnrolmentRefused("This study link is full: every place has been taken.", status=409)
    except EnrolmentRefused as exc:
        return _refused(request, exc, link)
    return _enrol_page(request, link, form, prolific)


def _enrol_page(request, link, form, prolific, status=200):
    return render(request, "annotation/enrol.html", {"link": link, "study": link.study, "form": form,
                                                      "prolific": prolific, "crowd": crowd_settings_of(study=link.study)},
                  status=status)


def _participant(request, slug: str) -> Participant:
    study = get_object_or_404(Study, slug=slug)
    participant = participant_of(user=request.user, study=study)
    if participant is None:
        raise Http404("You are not a participant of this study.")
    return participant


def _onboarding_participant(request, slug: str) -> tuple[Participant, object]:
    """The participant with the time limit applied, and where they must go first (None: stay).

    Onboarding comes after the instructions, like the items (the annotate page's rule)."""
    participant = participant_refresh(participant=_participant(request, slug))
    if not instructions_confirmed(study=participant.study, annotator=request.user):
        return participant, _go(request, reverse("annotation:study_instructions", args=[slug]))
    return participant, None


def _render_onboarding(request, participant: Participant, current: dict, form=None, status=200):
    payload = item_payload(assignment=current["assignment"])
    payload["progress"] = {"done": current["index"], "total": current["total"]}
    study = participant.study
    context = {
        "study": study, "payload": payload, "progress": payload["progress"], "onboarding": True,
        "history_is_text": isinstance(payload["history"], str),
        "form": form or RatingForm(questions=payload["questions"]),
        "action": reverse("annotation:onboarding_answer", args=[study.slug, payload["item"]]),
        "notice": f"Qualification item {current['index'] + 1} of {current['total']}: these items have known answers "
                  "and decide whether you take part in the study.",
    }
    template = "annotation/annotate.html#annotate" if request.htmx else "annotation/annotate.html"
    return render(request, template, context, status=status)


@require_GET
@login_required_htmx
def onboarding(request, slug: str):
    """The participant's current qualification item (after the instructions, within the time limit)."""
    participant, first = _onboarding_participant(request, slug)
    if first is not None:
        return first
    current = onboarding_next(participant=participant)
    if current is None:
        return redirect(participant_next_url(participant))
    return _render_onboarding(request, participant, current)


@require_POST
@login_required_htmx
def onboarding_item(request, slug: str, public_id: str):
    """Answers to a qualification item; after the last one, on to the study or to the screen-out."""
    participant, first = _onboarding_participant(request, slug)
    if first is not None:
        return first
    current = onboarding_next(participant=participant)
    if current is None:
        return _go(request, participant_next_url(participant))
    form = RatingForm(request.POST, questions=item_payload(assignment=current["assignment"])["questions"])
    if form.is_valid():
        try:
            participant = onboarding_answer(participant=participant, public_id=public_id, answers=form.answers())
        except ParticipantInactive:
            return _go(request, participant_next_url(participant))  # out of time meanwhile: their end page
        except RatingInvalid as exc:
            form.add_service_errors(exc.errors)
        else:
            current = onboarding_next(participant=participant)
            if current is None:
                if participant.status == Participant.Status.ACTIVE:
                    messages.success(request, "You qualified: your answers to the qualification items were good "
                                              "enough. Here is your first item of the study.")
                return _go(request, participant_next_url(participant))
            if request.htmx:
                return _render_onboarding(request, participant, current)
            return redirect("annotation:onboarding", slug=slug)
    return _render_onboarding(request, participant, current, form=form,
                              status=400 if form.has_repeated_fields() else 422)


@require_GET
@login_required_htmx
def participant_end(request, slug: str):
    """The participant's end: Prolific's completion (or screen-out) URL with the code, else a page saying why."""
    participant = participant_refresh(participant=_participant(request, slug))
    if participant.status in IN_PROGRESS:
        return redirect(participant_next_url(participant))
    url = completion_url(participant=participant)
    if url is not None:
        return redirect(url)
    status = {Participant.Status.TIMED_OUT: 403, Participant.Status.SCREENED_OUT: 403}.get(participant.status, 200)
    return render(request, "annotation/enrol_end.html", {"participant": participant, "study": participant.study},
                  status=status)


@require_http_methods(["GET", "POST"])
@login_required_htmx
def participant_leave_view(request, slug: str):
    """GET: a page asking to confirm (a Prolific participant who leaves gets no completion code);
    POST: the participant leaves the study, their reservation goes back to the pool at once."""
    participant = _participant(request, slug)
    if request.method == "GET":
        if participant_refresh(participant=participant).status not in IN_PROGRESS:
            return redirect(participant_next_url(participant))
        crowd = crowd_settings_of(study=participant.study)
        return render(request, "annotation/enrol_leave_confirm.html", {
            "participant": participant, "study": participant.study, "quota": crowd.items_per_participant,
            "left_work_counts": crowd.left_work_counts})
    participant = participant_leave(participant=participant)
    return _go(request, reverse("annotation:participant_end", args=[participant.study.slug]))


# --------------------------------------------------------------------------- staff


def enrol_manage_context(request, study: Study, *, link_form=None, crowd_form=None) -> dict:
    """What the study's manage page shows of links (with their absolute URLs), crowd settings and participants."""
    crowd = crowd_settings_of(study=study)
    links = list(links_with_usage(study=study))
    for link in links:
        link.urls = link_urls(absolute_path=request.build_absolute_uri(link_url(link)))
    return {
        "links": links,
        "link_form": link_form or StudyLinkForm(),
        "crowd_form": crowd_form or CrowdSettingsForm(instance=crowd),
        "participants": participant_rows(study=study),
    }


def _manage_again(request, study: Study, status: int, **forms):
    # lazy: a cycle: annotation.views imports this module; _render_manage is the manage page's one renderer
    from .views import _render_manage

    return _render_manage(request, study, enrol_forms=forms, status=status)


@require_POST
@staff_required
def study_link_create(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    form = StudyLinkForm(request.POST)
    if form.is_valid():
        try:
            link = link_create(study=study, created_by=request.user, **form.cleaned_data)
        except StudyFieldError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, f"New study link: {request.build_absolute_uri(link_url(link))}")
            return redirect("annotation:study_manage", slug=study.slug)
    return _manage_again(request, study, 400 if form.has_repeated_fields() else 422, link_form=form)


def link_url(link: StudyLink) -> str:
    """The path of a link's join page (staff add the host, and Prolific's parameters for a Prolific study)."""
    return reverse("annotation:enrol", args=[link.token])


@require_POST
@staff_required
def study_link_active(request, slug: str, pk: int):
    link = get_object_or_404(StudyLink, pk=pk, study__slug=slug)
    if request.POST.get("is_active") not in ("0", "1"):
        return HttpResponseBadRequest("is_active must be 0 or 1")
    link_set_active(link=link, is_active=request.POST["is_active"] == "1")
    messages.success(request, f"Link {link.label or link.pk} is {'active' if link.is_active else 'deactivated'}.")
    return redirect("annotation:study_manage", slug=slug)


@require_POST
@staff_required
def study_crowd_settings(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    form = CrowdSettingsForm(request.POST, instance=crowd_settings_of(study=study))
    if form.is_valid():
        try:
            crowd_settings_update(study=study, **form.cleaned_data)
        except StudyFieldError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, "Crowd settings saved.")
            return redirect("annotation:study_manage", slug=study.slug)
    return _manage_again(request, study, 400 if form.has_repeated_fields() else 422, crowd_form=form)


@require_GET
@staff_required
def study_participants_csv(request, slug: str):
    """Per-participant work for approval and bonuses, as CSV through the formula-neutralising writer."""
    study = get_object_or_404(Study, slug=slug)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-participants.csv"'
    writer = csv_writer(response)
    writer.writerow(PARTICIPANT_COLUMNS)
    for row in participant_rows(study=study):
        writer.writerow([" ".join(row[c]) if c == "flags" else row[c] for c in PARTICIPANT_COLUMNS])
    return response
