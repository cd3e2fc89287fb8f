"""The API's only request body parser: JSON, with a clean 400 for JSON nested too deeply to parse.

Python's ``json`` raises ``RecursionError`` (not ``ValueError``) on a few thousand nested
arrays, which DRF's own ``JSONParser`` lets through as a 500. Form and multipart bodies are
not parsed at all: DRF answers them with a JSON 415.
"""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise ParseError("JSON parse error - nested too deeply") from error
