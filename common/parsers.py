"""Request parsers for the API: every body they cannot read is a 400 with a reason, never a 500."""
from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JSONBodyParser(JSONParser):
    """DRF's JSON parser, which also refuses JSON nested too deeply for Python's parser.

    ``json.loads`` raises RecursionError (not ValueError) on ``[[[[...]]]]`` thousands deep, which
    DRF's parser lets through as a 500 (issue 17).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type=media_type, parser_context=parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the body is nested too deeply") from exc
