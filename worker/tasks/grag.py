"""Celery tasks for the grag stage (thin wrappers: take a job id, call one service)."""
