"""The annotator's workflow pages (issue 21): done items, skip, flag; and staff resolving flags.

Same rules as ``annotation.views``: one view per endpoint, htmx gets the item fragment in place
and a plain form is redirected; blinding holds (items are named by their opaque public id only).
"""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from common.permissions import login_required_htmx, staff_required

from .forms import RatingForm
from .models import Assignment, Flag, Study
from .selectors import annotator_progress, item_payload
from .services import (
    ItemConflict,
    RatingInvalid,
    StudyClosed,
    assignment_skip,
    flag_create,
    flag_resolve,
)
from .views import _annotator_study, _next, _own_assignment, _render_item
from .workflow_selectors import annotator_items


@require_GET
@login_required_htmx
def done_items(request, slug: str):
    """The annotator's rated and skipped items of a study, each rated one with a link to review or change it."""
    study = _annotator_study(request, slug)
    return render(request, "annotation/done_items.html", {
        "study": study, "items": annotator_items(study=study, annotator=request.user),
        "progress": annotator_progress(study=study, annotator=request.user),
    })


def _refused(request, study: Study, assignment: Assignment, errors: dict, status: int):
    """The item again, the answers typed so far kept, with why the skip or flag was refused."""
    payload = item_payload(assignment=assignment)
    initial = {k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
    form = RatingForm(questions=payload["questions"], initial=initial)
    notice = " ".join(str(m) for m in errors.values())
    return _render_item(request, study=study, assignment=assignment, form=form, notice=notice, status=status)


@require_POST
@login_required_htmx
def item_skip(request, slug: str, public_id: str):
    """Skip the item with a reason (POST ``reason``): it goes back to the pool; then the next item."""
    study = _annotator_study(request, slug)
    assignment = _own_assignment(request, study, public_id)
    reason = request.POST.get("reason", "")
    if len(request.POST.getlist("reason")) > 1:
        return _refused(request, study, assignment, {"reason": "Choose one reason."}, 400)
    try:
        assignment_skip(study=study, annotator=request.user, public_id=public_id, reason=reason)
    except (StudyClosed, ItemConflict) as exc:
        return _refused(request, study, assignment, exc.errors, 409)
    except RatingInvalid:
        labels = "; ".join(str(label) for _value, label in Assignment.SkipReason.choices)
        return _refused(request, study, assignment, {"reason": f"To skip, choose a reason ({labels})."}, 422)
    return _next(request, study, notice="Item skipped: it goes to another annotator. Here is your next item.")


@require_POST
@login_required_htmx
def item_flag(request, slug: str, public_id: str):
    """Report the item to staff (POST ``flag_comment``); the annotator stays on it, answers kept."""
    study = _annotator_study(request, slug)
    assignment = _own_assignment(request, study, public_id)
    if len(request.POST.getlist("flag_comment")) > 1:
        return _refused(request, study, assignment, {"comment": "Send one comment."}, 400)
    try:
        flag_create(study=study, annotator=request.user, public_id=public_id, comment=request.POST.get("flag_comment", ""))
    except (StudyClosed, ItemConflict) as exc:  # closed, participant no longer active, or already reported
        return _refused(request, study, assignment, exc.errors, 409)
    except RatingInvalid as exc:
        errors = {"comment": f"Report not sent: {exc.errors.get('comment', exc)}."}
        return _refused(request, study, assignment, errors, 422)
    if not request.htmx:
        messages.success(request, "Thank you: the study's staff will look at this item.")
        if assignment.status == Assignment.Status.RESERVED:
            return redirect("annotation:annotate", slug=study.slug)
        return redirect("annotation:item_rate", slug=study.slug, public_id=public_id)
    payload = item_payload(assignment=assignment)
    initial = {k: v for k, v in request.POST.items() if k not in ("csrfmiddlewaretoken", "flag_comment")}
    form = RatingForm(questions=payload["questions"], initial=initial)
    return _render_item(request, study=study, assignment=assignment, form=form,
                        notice="Thank you: the study's staff will look at this item.")


@require_POST
@staff_required
def flag_resolve_view(request, slug: str, pk: int):
    """Staff mark a flag resolved; back to the study's manage page."""
    study = get_object_or_404(Study, slug=slug)
    flag = get_object_or_404(Flag, pk=pk, item__study=study)
    flag_resolve(flag=flag, by=request.user)
    messages.success(request, "Flag marked resolved.")
    return redirect(reverse("annotation:study_manage", args=[study.slug]) + "#flags")

