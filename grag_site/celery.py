"""The Celery app: configuration comes from Django settings under the CELERY_ namespace."""
import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

from common.threads import torch_threads_apply

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grag_site.settings.local")

app = Celery("grag_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@worker_process_init.connect
def _torch_threads(**_):
    """Every torch computation of a worker (training, generation, metrics, the LLM layer) uses
    LLM_CPU_THREADS threads when set (common/threads.py): set once in the worker process (the
    solo pool) and again in each forked pool process."""
    torch_threads_apply()
