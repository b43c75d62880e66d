"""JSON from clients, parsed with a bound on its nesting: API bodies, WebSocket frames, Stripe webhooks."""

from __future__ import annotations

import json
import re
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json as drf_json

# Deeper than anything Strata takes (a Stripe event nests about six levels), and far below the
# depth at which CPython's parser, or our own recursive walks of a parsed value (the storable-text
# check, JSONB encoding), would raise RecursionError: a 500 for a few kilobytes of brackets.
MAX_JSON_DEPTH = 64

# A string literal (skipped whole, escapes included) or a bracket; only brackets outside strings nest.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(?P<open>[\[{])|(?P<close>[\]}])')


class JSONTooDeep(ValueError):
    """JSON nested deeper than ``MAX_JSON_DEPTH`` (a ValueError, as any other malformed JSON)."""


def json_depth_check(text: str, *, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise ``JSONTooDeep`` when ``text`` nests arrays and objects deeper than ``limit``.

    One linear scan, stopped at the first level too deep; skipped when there are too few brackets
    in all to nest that deep (nearly every request)."""
    if text.count("[") + text.count("{") <= limit:
        return
    depth = 0
    for token in _TOKENS.finditer(text):
        if token.lastgroup == "open":
            depth += 1
            if depth > limit:
                raise JSONTooDeep(f"JSON may nest at most {limit} levels deep.")
        elif token.lastgroup == "close":
            depth -= 1


def json_loads(data: str | bytes, **options: Any) -> Any:
    """``json.loads`` for text from outside: a ValueError (never RecursionError) for JSON too deep."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    json_depth_check(text)
    return json.loads(text, **options)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (the default in settings, and any view's ``parser_classes``), bounded in depth."""

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = stream.read().decode(encoding)
            return json_loads(text, parse_constant=drf_json.strict_constant if self.strict else None)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
