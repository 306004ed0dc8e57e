"""Dataset importers: one Django-free parser per source format, and the service that stores them.

``PARSERS[kind](path, limit=None) -> ParseResult``; ``service.dataset_import`` writes the rows.
"""
from . import convai2, ed, jsonl, pfg, spc
from .base import AGENT, USER, ImportFileError, ParsedConversation, ParseResult, Turn

PARSERS = {
    "spc": spc.parse,
    "pfg": pfg.parse,
    "ed": ed.parse,
    "convai2": convai2.parse,
    "jsonl": jsonl.parse,
}

__all__ = ["AGENT", "PARSERS", "USER", "ImportFileError", "ParseResult", "ParsedConversation", "Turn"]
