"""Stripe's wire format as the fake speaks it: form decoding, replies, error bodies, ids, and the
`route` mark a resource's handler carries."""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl

from requests.structures import CaseInsensitiveDict

Json = dict[str, Any]

_ALNUM = string.ascii_letters + string.digits
WHOLE_NUMBER = re.compile(r"-?\d+")
_KEY_PATH = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")
# `{id}` in a route's path is one path segment, given to the handler as match["id"].
_ID_SEGMENT = r"(?P<id>[^/]+)"


class RecordedRequest(NamedTuple):
    """One request as the fake received it (headers are case-insensitive)."""

    method: str
    path: str
    form: Json
    headers: CaseInsensitiveDict[str]


@dataclass
class Reply:
    status: int
    body: Json | None = None
    headers: dict[str, str] | None = None
    raw: bytes | None = None
    content_type: str = "application/json"


class StripeError(Exception):
    """Raised inside handlers; rendered as Stripe's `{"error": {...}}` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def reply(self) -> Reply:
        return Reply(self.status, error_body(self.message, self.type, self.code, self.param), self.headers)


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> Json:
    error: Json = {"message": message, "type": type_}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    return {"error": error}


def missing(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def no_such(kind: str, object_id: str, param: str = "id") -> StripeError:
    # Only the object named by the URL is a 404; a bad id in a body parameter is a 400 at Stripe.
    status = 404 if param == "id" else 400
    return StripeError(status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def copy(obj: Json) -> Json:
    # Callers get snapshots, so later changes to the fake's state do not rewrite old events.
    copied: Json = json.loads(json.dumps(obj))
    return copied


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def parse_form(body: str) -> Json:
    """Decode Stripe-style form encoding (`a[b][0][c]=v`) into nested dicts and lists."""
    root: Json = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        match = _KEY_PATH.match(key)
        if match is None:
            # Not bracket-shaped (e.g. a stray "]"): keep it verbatim rather than guess.
            root[key] = value
            continue
        parts = [match.group(1), *_BRACKETS.findall(match.group(2))]
        node = root
        for index, part in enumerate(parts):
            # `key[]=v` appends; numbering it lets the list conversion below handle it.
            name = part or str(len(node))
            if index == len(parts) - 1:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = {}
                    node[name] = child
                node = child
    # The top level is always a hash, even if every key happens to be a digit.
    return {key: _listify(value) for key, value in root.items()}


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    # Only a dense 0..n-1 run is an array; metadata keys that happen to be digits stay a hash.
    if converted and set(converted) == {str(i) for i in range(len(converted))}:
        return [converted[str(i)] for i in range(len(converted))]
    return converted


# A handler answers one route: (self, form, path, match) -> Reply; it raises StripeError to refuse.
Handler = TypeVar("Handler", bound=Callable[..., Reply])


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    needs_key: bool


def route(method: str, path: str, *, public: bool = False) -> Callable[[Handler], Handler]:
    """Mark a resource method as the handler of ``method path`` (``{id}`` is one path segment).
    Routes need the API key unless ``public`` (the hosted pages a browser opens)."""
    pattern = re.compile(path.replace("{id}", _ID_SEGMENT))

    def mark(handler: Handler) -> Handler:
        handler.stripe_route = Route(method, pattern, not public)  # type: ignore[attr-defined]
        return handler

    return mark
