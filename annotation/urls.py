"""Annotator and staff pages of studies (included from grag_site/urls.py at the site root).

Item URLs carry the opaque ``Item.public_id``, never a database id (blinding, section 5.5).
"""
from django.urls import path

from . import enrol_views, views, views_workflow

app_name = "annotation"
urlpatterns = [
    path("studies/", views.study_list, name="study_list"),
    path("planner/", views.study_plan, name="study_plan"),
    path("studies/<slug:slug>/", views.study_instructions, name="study_instructions"),
    path("studies/<slug:slug>/annotate/", views.annotate, name="annotate"),
    path("studies/<slug:slug>/items/<str:public_id>/", views.item_rate, name="item_rate"),
    path("studies/<slug:slug>/items/<str:public_id>/skip/", views_workflow.item_skip, name="item_skip"),
    path("studies/<slug:slug>/items/<str:public_id>/flag/", views_workflow.item_flag, name="item_flag"),
    path("studies/<slug:slug>/done/", views_workflow.done_items, name="done_items"),
    path("studies/<slug:slug>/manage/flags/<int:pk>/resolve/", views_workflow.flag_resolve_view, name="flag_resolve"),
    path("studies/<slug:slug>/manage/", views.study_manage, name="study_manage"),
    path("studies/<slug:slug>/manage/instructions/", views.study_instructions_edit, name="study_instructions_edit"),
    path("studies/<slug:slug>/manage/questions/", views.study_questions_edit, name="study_questions_edit"),
    path("studies/<slug:slug>/manage/annotators/", views.study_annotator_add, name="study_annotator_add"),
    path("studies/<slug:slug>/manage/open/", views.study_open_set, name="study_open_set"),
    # Crowd studies (issue 21): the join link, onboarding, the participant's end; staff links and export.
    path("join/<str:token>/", enrol_views.enrol, name="enrol"),
    path("studies/<slug:slug>/onboarding/", enrol_views.onboarding, name="onboarding"),
    path("studies/<slug:slug>/onboarding/<str:public_id>/", enrol_views.onboarding_item, name="onboarding_answer"),
    path("studies/<slug:slug>/end/", enrol_views.participant_end, name="participant_end"),
    path("studies/<slug:slug>/leave/", enrol_views.participant_leave_view, name="participant_leave"),
    path("studies/<slug:slug>/manage/links/", enrol_views.study_link_create, name="study_link_create"),
    path("studies/<slug:slug>/manage/links/<int:pk>/active/", enrol_views.study_link_active, name="study_link_active"),
    path("studies/<slug:slug>/manage/crowd/", enrol_views.study_crowd_settings, name="study_crowd_settings"),
    path("studies/<slug:slug>/manage/participants.csv", enrol_views.study_participants_csv,
         name="study_participants_csv"),
]
