"""Development and demo: DEBUG on by default and a fixed, clearly insecure secret key."""
import os

os.environ.setdefault("SECRET_KEY", "insecure-local-development-key-change-me")
os.environ.setdefault("DEBUG", "true")

from .base import *  # noqa: E402,F401,F403
