"""Celery tasks for the pipeline stage (thin wrappers: take a job id, call one service)."""
