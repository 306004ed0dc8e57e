"""Annotation API routes (included under /api/ from grag_site/urls.py)."""
from django.urls import path

from . import api, api_workflow, enrol_api

app_name = "annotation_api"
urlpatterns = [
    path("token/", api.TokenView.as_view(), name="token"),
    path("studies/", api.StudyListView.as_view(), name="studies"),
    path("studies/<slug:slug>/", api.StudyDetailView.as_view(), name="study"),
    path("studies/<slug:slug>/next/", api.NextItemView.as_view(), name="next"),
    path("studies/<slug:slug>/items/<str:item>/ratings/", api.RatingSubmitView.as_view(), name="ratings"),
    path("studies/<slug:slug>/instructions/", api_workflow.InstructionsConfirmView.as_view(), name="instructions"),
    path("studies/<slug:slug>/items/", api_workflow.MyItemsView.as_view(), name="my-items"),
    path("studies/<slug:slug>/items/<str:item>/", api_workflow.MyItemDetailView.as_view(), name="my-item"),
    path("studies/<slug:slug>/items/<str:item>/skip/", api_workflow.ItemSkipView.as_view(), name="skip"),
    path("studies/<slug:slug>/items/<str:item>/flag/", api_workflow.ItemFlagView.as_view(), name="flag"),
    path("staff/studies/", api.StaffStudyListView.as_view(), name="staff-studies"),
    path("staff/studies/<slug:slug>/", api.StaffStudyDetailView.as_view(), name="staff-study"),
    path("staff/studies/<slug:slug>/items/", api.StaffItemsView.as_view(), name="staff-items"),
    path("staff/studies/<slug:slug>/ratings/", api.StaffRatingsView.as_view(), name="staff-ratings"),
    path("staff/studies/<slug:slug>/quality/", api.StaffQualityView.as_view(), name="staff-quality"),
    path("staff/studies/<slug:slug>/author-tells/", api.StaffAuthorTellsView.as_view(), name="staff-author-tells"),
    path("staff/studies/<slug:slug>/annotators/", api.StaffAnnotatorsView.as_view(), name="staff-annotators"),
    path("staff/studies/<slug:slug>/flags/", api_workflow.StaffFlagsView.as_view(), name="staff-flags"),
    path("staff/studies/<slug:slug>/flags/<int:flag>/resolve/", api_workflow.StaffFlagResolveView.as_view(),
         name="staff-flag-resolve"),
    # Crowd studies (issue 21)
    path("staff/studies/<slug:slug>/links/", enrol_api.StaffLinksView.as_view(), name="staff-links"),
    path("staff/studies/<slug:slug>/links/<int:pk>/", enrol_api.StaffLinkDetailView.as_view(), name="staff-link"),
    path("staff/studies/<slug:slug>/crowd/", enrol_api.StaffCrowdSettingsView.as_view(), name="staff-crowd"),
    path("staff/studies/<slug:slug>/participants/", enrol_api.StaffParticipantsView.as_view(),
         name="staff-participants"),
]
