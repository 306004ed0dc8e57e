"""Who may call which annotation API view."""
from rest_framework.permissions import BasePermission


class IsStaff(BasePermission):
    """Staff only; others (authenticated) get 403."""

    message = "Staff only."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
