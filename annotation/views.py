"""Annotator and staff pages of a study (paper section 5.5), in Django templates + htmx.

One view per endpoint; the page and its htmx fragment come from the same template
(``{% partialdef %}``). Every form also works as a plain POST-then-redirect without JavaScript.

Blinding: the annotator pages render only ``item_payload`` (texts under "A"/"B", the opaque
public id), never an Item or Assignment, so no system name, database id or side leaks into
HTML, URLs or attributes.
"""

from django.contrib import messages
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.permissions import login_required_htmx, staff_required

from .enrol_views import enrol_manage_context, participant_redirect, participant_when_none_left
from .forms import AnnotatorAddForm, InstructionsForm, QuestionFormSet, RatingForm, StudyPlanForm
from .giveaways import study_giveaway_report
from .models import RATED_KINDS, Assignment, Study
from .participants import staff_names
from .selectors import (
    annotator_progress,
    annotator_quality,
    annotator_studies,
    assignment_current_answers,
    assignment_for_annotator,
    item_payload,
    study_for_annotator,
    study_items_state,
    study_onboarding_items,
)
from .services import (
    ItemConflict,
    RatingInvalid,
    ReservationLost,
    StudyClosed,
    annotator_add,
    assignment_next,
    instructions_confirm,
    instructions_confirmed,
    rating_submit,
    study_update,
)
from .services.enrolment import participant_of
from .workflow_selectors import (
    MANAGE_FLAGS_SHOWN,
    assignment_current_comment,
    assignment_previous,
    study_flags,
    study_flags_open_count,
)

ITEM_FRAGMENT = "annotation/annotate.html#annotate"


def _instructions_seen(request, study: Study) -> bool:
    """Annotators read the instructions before their first item, and again after staff change them.

    Stored per annotator and study in the database (issue 21): once per version, not per login.
    """
    return instructions_confirmed(study=study, annotator=request.user)


def _annotator_study(request, slug: str) -> Study:
    """The study if this user annotates it; 404 otherwise (an outsider learns nothing about it)."""
    study = study_for_annotator(user=request.user, slug=slug)
    if study is None:
        raise Http404("No such study for you.")
    return study


def item_form_initial(assignment: Assignment) -> dict:
    """The rating form's initial values: the annotator's current answers and comment on this item."""
    initial = {"comment": assignment_current_comment(assignment=assignment)}
    for q, answer in assignment_current_answers(assignment=assignment).items():
        initial[f"{q}-choice"] = answer["choice"]
        initial[f"{q}-confidence"] = answer["confidence"]
    return initial


def item_workflow_context(request, *, study: Study, assignment: Assignment | None) -> dict:
    """What the annotate page adds around an item: previous-item and done-list links, skip reasons, read-only state."""
    previous = assignment_previous(study=study, annotator=request.user, before=assignment)
    context = {
        "readonly": not study.is_open,
        "editing": assignment is not None and assignment.status == Assignment.Status.COMPLETED,
        "previous_url": reverse("annotation:item_rate", args=[study.slug, previous.item.public_id]) if previous else "",
        "done_url": reverse("annotation:done_items", args=[study.slug]),
        "current_url": reverse("annotation:annotate", args=[study.slug]),
        "skip_reasons": Assignment.SkipReason.choices,
    }
    if assignment is not None:
        public_id = assignment.item.public_id
        context["skip_url"] = reverse("annotation:item_skip", args=[study.slug, public_id])
        context["flag_url"] = reverse("annotation:item_flag", args=[study.slug, public_id])
    return context


def _render_item(
    request, *, study: Study, assignment: Assignment | None, form: RatingForm | None = None, notice: str = "",
    status: int = 200,
):
    """The item page (or the all-done message) as a full page, or as the fragment htmx swaps in."""
    context = {"study": study, "notice": notice}
    if assignment is None and (gone := participant_when_none_left(request, study)) is not None:
        return gone  # a crowd participant with nothing left goes to their end page (issue 21)
    if not request.htmx:
        context["participant"] = participant_of(user=request.user, study=study)  # the "leave the study" button
    if assignment is None:
        context["progress"] = annotator_progress(study=study, annotator=request.user)
        context.update(item_workflow_context(request, study=study, assignment=None))
    else:
        payload = item_payload(assignment=assignment)
        context.update(
            payload=payload,
            history_is_text=isinstance(payload["history"], str),
            form=form or RatingForm(questions=payload["questions"], initial=item_form_initial(assignment)),
            action=reverse("annotation:item_rate", args=[study.slug, payload["item"]]),
            **item_workflow_context(request, study=study, assignment=assignment),
        )
        context["progress"] = payload["progress"]
    template = ITEM_FRAGMENT if request.htmx else "annotation/annotate.html"
    return render(request, template, context, status=status)


@require_GET
@login_required_htmx
def study_list(request):
    studies = [
        {"study": s, "progress": annotator_progress(study=s, annotator=request.user)}
        for s in annotator_studies(user=request.user)
    ]
    # Staff also get every study's management page from here.
    all_studies = Study.objects.order_by("-created_at") if request.user.is_staff else None
    return render(request, "annotation/study_list.html", {"studies": studies, "all_studies": all_studies})


@require_http_methods(["GET", "POST"])
@login_required_htmx
def study_instructions(request, slug: str):
    """Instructions before the first item; POST records that this version was read."""
    study = _annotator_study(request, slug)
    if request.method == "POST":
        instructions_confirm(study=study, annotator=request.user)
        return redirect("annotation:annotate", slug=study.slug)
    return render(
        request,
        "annotation/instructions.html",
        {"study": study, "seen": _instructions_seen(request, study),
         "progress": annotator_progress(study=study, annotator=request.user)},
    )


@require_GET
@login_required_htmx
def annotate(request, slug: str):
    """The annotator's current item: their open reservation, or a newly reserved one, or all done."""
    study = _annotator_study(request, slug)
    if not _instructions_seen(request, study):
        return redirect("annotation:study_instructions", slug=study.slug)
    if (onward := participant_redirect(request, study)) is not None:
        return onward  # a crowd participant in onboarding, or whose study is over for them (issue 21)
    return _render_item(request, study=study, assignment=assignment_next(study=study, annotator=request.user))


def _own_assignment(request, study: Study, public_id: str) -> Assignment:
    """This annotator's assignment of an item of this study; 404 for anything else."""
    assignment = assignment_for_annotator(study=study, annotator=request.user, public_id=public_id)
    if assignment is None:
        raise Http404("No such item for you.")
    return assignment


@require_http_methods(["GET", "POST"])
@login_required_htmx
def item_rate(request, slug: str, public_id: str):
    """GET shows a reserved item, or an earlier rated one with its answers to change; POST stores
    the four answers and the comment, and moves on to the current (next) item.

    A repeated submit (double click, retry after a lost response) stores nothing: it just shows
    the next item. A closed study shows the item read-only (409 on POST); a skipped item sends
    the annotator to their list of done items.
    """
    study = _annotator_study(request, slug)
    assignment = _own_assignment(request, study, public_id)
    if assignment.status == Assignment.Status.SKIPPED:
        messages.info(request, "You skipped that item; it went to another annotator.")
        return redirect("annotation:done_items", slug=study.slug)
    if request.method == "GET":
        if assignment.status == Assignment.Status.EXPIRED:
            return redirect("annotation:annotate", slug=study.slug)
        return _render_item(request, study=study, assignment=assignment)
    payload = item_payload(assignment=assignment)
    form = RatingForm(request.POST, questions=payload["questions"])
    earlier = assignment.status == Assignment.Status.COMPLETED  # "Save changes" on an earlier item
    if form.is_valid():
        try:
            rating_submit(assignment=assignment, answers=form.answers(), comment=form.cleaned_data["comment"])
        except ReservationLost as exc:
            return _next(request, study, notice=exc.errors.get("item", str(exc)))
        except (StudyClosed, ItemConflict) as exc:
            notice = next(iter(exc.errors.values()))
            return _render_item(request, study=study, assignment=assignment, notice=notice, status=409)
        except RatingInvalid as exc:
            form.add_service_errors(exc.errors)
        else:
            if earlier:
                return _next(request, study, notice=EARLIER_SAVED, level=messages.SUCCESS)
            return _next(request, study)
    # 422 so the answers are known to be refused; the page's htmx config swaps it in anyway.
    # An answer sent twice is a malformed request, not a wrong answer: 400, as the API says.
    status = 400 if form.has_repeated_fields() else 422
    return _render_item(request, study=study, assignment=assignment, form=form, status=status)


EARLIER_SAVED = "Your changes to the earlier item are saved. Here is your current item."


def _next(request, study: Study, notice: str = "", level: int = messages.WARNING):
    """After a stored rating: htmx gets the next item in place, a plain form is redirected (PRG).

    Either way the address bar ends on the study's annotate URL (``HX-Push-Url`` for htmx), so a
    reload shows the current item, never the earlier one that was just saved or the one skipped.
    """
    if request.htmx:
        response = _render_item(
            request, study=study, assignment=assignment_next(study=study, annotator=request.user), notice=notice
        )
        response["HX-Push-Url"] = reverse("annotation:annotate", args=[study.slug])
        return response
    if notice:
        messages.add_message(request, level, notice)
    return redirect("annotation:annotate", slug=study.slug)


# --- Staff -----------------------------------------------------------------------------------


def _study_overview(study: Study) -> dict:
    """Items with their assignment state, progress and quality figures per annotator (staff only)."""
    items = study_items_state(study=study)
    quality = {row["annotator"]: row for row in annotator_quality(study=study)}
    annotators = [
        {"user": user, "progress": annotator_progress(study=study, annotator=user), "quality": quality.get(user.username)}
        for user in study.annotators.order_by("username")
    ]

    flags = study_flags(study=study, newest=MANAGE_FLAGS_SHOWN)  # the API lists every one
    flags_open = study_flags_open_count(study=study)
    return {
        "items": items, "annotators": annotators, "onboarding_items": study_onboarding_items(study=study),
        "names": staff_names(study=study),  # participants by display name, not generated username (issue 21)
        # counts of rated items only (models.RATED_KINDS): traps are listed but are checks, not results
        "items_rated": sum(1 for i in items if i["kind"] in RATED_KINDS),
        "items_done": sum(1 for i in items if i["kind"] in RATED_KINDS and i["state"] == "done"),
        "giveaways": study_giveaway_report(study=study), "flags": flags, "flags_open": flags_open,
        "flags_more": flags_open - len(flags),
    }


def _render_manage(
    request, study: Study, *, instructions_form=None, question_formset=None, annotator_form=None, questions_error="",
    status=200, enrol_forms: dict | None = None,
):
    context = {
        "study": study,
        "questions_error": questions_error,
        "instructions_form": instructions_form or InstructionsForm(initial={"instructions": study.instructions}),
        "question_formset": question_formset or QuestionFormSet(queryset=study.questions.all(), prefix="questions"),
        "annotator_form": annotator_form or AnnotatorAddForm(),
        "plan_form": StudyPlanForm(initial={"overlap": study.overlap}),
        **_study_overview(study),
        **enrol_manage_context(request, study, **(enrol_forms or {})),  # links, crowd settings, participants (issue 21)
    }
    return render(request, "annotation/manage.html", context, status=status)


@require_GET
@staff_required
def study_manage(request, slug: str):
    return _render_manage(request, get_object_or_404(Study, slug=slug))


@require_POST
@staff_required
def study_instructions_edit(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    form = InstructionsForm(request.POST)
    if not form.is_valid():
        return _render_manage(request, study, instructions_form=form, status=400 if form.has_repeated_fields() else 422)
    version = study.instructions_version
    # Browsers post CRLF; compare like with like so an untouched text is not a new version.
    study = study_update(study=study, instructions=form.cleaned_data["instructions"].replace("\r\n", "\n"))
    if study.instructions_version != version:
        messages.success(request, f"Instructions saved as version {study.instructions_version}.")
    else:
        messages.info(request, "The instructions did not change.")
    return redirect("annotation:study_manage", slug=study.slug)


@require_POST
@staff_required
def study_questions_edit(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    formset = QuestionFormSet(request.POST, queryset=study.questions.all(), prefix="questions")
    if formset.is_valid():
        # Every question is passed on, edited or not: the service drops questions left out.
        edited = {f.instance.key: f.cleaned_data for f in formset.forms if f.instance.pk and f.cleaned_data}
        questions = [
            {"key": q.key, "label": edited.get(q.key, {}).get("label", q.label), "text": edited.get(q.key, {}).get("text", q.text)}
            for q in study.questions.all()
        ]
        try:
            study_update(study=study, questions=questions)
        except ValueError as exc:
            return _render_manage(request, study, question_formset=formset, questions_error=str(exc), status=422)
        messages.success(request, "Questions saved.")
        return redirect("annotation:study_manage", slug=study.slug)
    return _render_manage(request, study, question_formset=formset, status=422)


@require_POST
@staff_required
def study_open_set(request, slug: str):
    """Open the study to its annotators, or close it (POST ``is_open`` = "1" or "0"); staff decide after review."""
    study = get_object_or_404(Study, slug=slug)
    if request.POST.get("is_open") not in ("0", "1"):
        return HttpResponseBadRequest("is_open must be 0 or 1")
    is_open = request.POST["is_open"] == "1"
    study_update(study=study, is_open=is_open)
    messages.success(request, "The study is open to its annotators." if is_open else "The study is closed to annotators.")
    return redirect("annotation:study_manage", slug=study.slug)


@require_POST
@staff_required
def study_annotator_add(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    form = AnnotatorAddForm(request.POST)
    if form.is_valid():
        try:
            user = annotator_add(
                username=form.cleaned_data["username"], password=form.cleaned_data["password"] or None, study=study
            )
        except ValueError as exc:
            form.add_error(getattr(exc, "field", None), str(exc))
        else:
            messages.success(request, f"{user.username} can now annotate {study.slug}.")
            return redirect("annotation:study_manage", slug=study.slug)
    return _render_manage(request, study, annotator_form=form, status=400 if form.has_repeated_fields() else 422)


@require_GET
@staff_required
def study_plan(request):
    """Items and raters a study needs to detect a win-rate gap (issue 20); htmx gets the result fragment."""
    form = StudyPlanForm(request.GET or None)
    plan = form.plan() if form.is_bound and form.is_valid() else None
    template = "annotation/_study_plan_form.html#plan" if request.htmx else "annotation/study_plan.html"
    return render(request, template, {"plan_form": form, "plan": plan}, status=400 if form.errors else 200)
