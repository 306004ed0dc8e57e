"""Celery tasks for the llm stage (thin wrappers: take a job id, call one service)."""
