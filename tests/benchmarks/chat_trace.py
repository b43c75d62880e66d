"""A Strata web process that records where each chat turn's time goes before its first token, for
``bench_chat_phases.py``: ``python -m tests.benchmarks.chat_trace --port N --trace FILE``.

It serves ``config.asgi`` under uvicorn with the flags the benchmarks use, after wrapping the
turn's steps (the functions ``ai.chat.services`` and the consumer call, looked up by name where
they are called) so that each records a span: its name, start and end (ms on ``perf_counter``)
and thread. One JSON line per turn is appended to FILE when the next turn starts or the process
stops. Turns must come one at a time: the spans of the turn under way are one module-level list.

Benchmark code only: the product has no tracing of its own to switch on.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

_spans: list[tuple[str, float, float, str]] = []
_out: Any = None


def _now() -> float:
    return time.perf_counter() * 1000


def _record(name: str, start: float, end: float) -> None:
    _spans.append((name, round(start, 3), round(end, 3), threading.current_thread().name))


def _flush() -> None:
    if _spans and _out is not None:
        _out.write(json.dumps(_spans) + "\n")
        _out.flush()
    _spans.clear()


def _timed(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = _now()
        try:
            return function(*args, **kwargs)
        finally:
            _record(name, start, _now())

    return timed


def _timed_async(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(function)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = _now()
        try:
            return await function(*args, **kwargs)
        finally:
            _record(name, start, _now())

    return timed


def install() -> None:
    """Wrap the turn's steps (after ``django.setup``)."""
    import ai.chat.answers as answers
    import ai.chat.services as services
    import ai.consumers as consumers
    from ai.embedding.batching import QueryBatcher
    from core.platform.admission import Admission

    consumer = consumers.ChatConsumer
    receive = consumer.receive

    async def traced_receive(self: Any, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        _flush()
        now = _now()
        _record("frame received", now, now)
        await receive(self, text_data, bytes_data)

    consumer.receive = traced_receive

    send = consumer.send

    async def traced_send(self: Any, text_data: str | None = None, **kwargs: Any) -> None:
        start = _now()
        await send(self, text_data=text_data, **kwargs)
        if text_data and '"type": "token"' in text_data and not any(span[0] == "first token sent" for span in _spans):
            _record("first token sent", start, _now())

    consumer.send = traced_send

    prepare = services._prepare

    def traced_prepare(**kwargs: Any) -> Any:
        if kwargs.get("still_allowed") is not None:
            kwargs["still_allowed"] = _timed(kwargs["still_allowed"], "re-authorisation")
        return _timed(prepare, "acceptance step")(**kwargs)

    services._prepare = traced_prepare
    for name, label in [
        ("get_llm_provider", "provider"),
        ("stream_slot", "stream slot made"),
        ("tenant_context", "tenant context"),
        ("reader_of", "reader"),
        ("quota_check", "plan and period read"),
        ("prompt_active", "active prompt read"),
        ("allowance_reserve", "tokens reserved"),
        ("_turn_store", "turn stored"),
        ("query_embedding_soon", "waiting for the vector"),
        ("documents_search", "passages searched"),
    ]:
        setattr(services, name, _timed(getattr(services, name), label))
    consumers.chat_answer_open = _timed_async(consumers.chat_answer_open, "answer opened (upstream request sent)")
    QueryBatcher._process = _timed(QueryBatcher._process, "question embedded")
    Admission.acquire = _timed(Admission.acquire, "stream slot taken")
    Admission.add = _timed(Admission.add, "tenant's slot taken")

    stream = answers.chat_stream

    async def traced_stream(*, turn: Any, publish: Callable[[dict[str, Any]], None]) -> None:
        def traced_publish(frame: dict[str, Any]) -> None:
            if frame["type"] == "token" and not any(span[0] == "first token published" for span in _spans):
                now = _now()
                _record("first token published", now, now)
            publish(frame)

        await stream(turn=turn, publish=traced_publish)

    answers.chat_stream = traced_stream


def main() -> None:
    global _out
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--trace", required=True)
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import uvicorn

    from config.asgi import application  # django.setup()

    install()
    _out = open(options.trace, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
    atexit.register(_flush)
    uvicorn.run(
        application,
        host="127.0.0.1",
        port=options.port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
