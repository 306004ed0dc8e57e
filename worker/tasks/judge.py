"""Celery tasks for the judge stage (thin wrappers: take a job id, call one service)."""
