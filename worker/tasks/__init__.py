"""Celery tasks, one module per stage; Celery's autodiscovery imports this package."""
from .annotation import *  # noqa: F401,F403
from .core import *  # noqa: F401,F403
from .grag import *  # noqa: F401,F403
from .judge import *  # noqa: F401,F403
from .llm import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .pipeline import *  # noqa: F401,F403
