"""Celery tasks for the annotation stage (thin wrappers: take a job id, call one service)."""
