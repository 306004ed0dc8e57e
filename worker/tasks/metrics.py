"""Celery tasks for the metrics stage (thin wrappers: take a job id, call one service)."""
