"""A real uvicorn server for the ASGI app, in a thread of the test process (same test database).
Processes of their own, ports and waits are tests/processes.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from asgiref.sync import sync_to_async
from django_tenants.utils import get_public_schema_name, schema_context

from tests.processes import free_port, wait_until


class LiveAsgiServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        from config.asgi import application
        from config.serving import UVICORN_OPTIONS

        config = uvicorn.Config(
            application, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning", **UVICORN_OPTIONS
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        serve = self.server.serve

        async def serve_recording_the_loop(*args: Any, **kwargs: Any) -> None:
            self.loop = asyncio.get_running_loop()
            await serve(*args, **kwargs)

        self.server.serve = serve_recording_the_loop  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, name="live-asgi", daemon=True)

    def start(self) -> LiveAsgiServer:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=20, every=0.02, what="uvicorn started")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    async def run_as_a_view(self, fn: Callable[[], Any]) -> Any:
        """Run sync ``fn`` where the server runs a sync view: in a worker thread of the server's
        event loop (what an operator's admin action does; its on-commit broadcasts start there)."""
        assert self.loop is not None

        def as_a_public_view() -> Any:
            # As the tenant middleware does first: a thread's connection may still be in the schema
            # of the last request it served.
            with schema_context(get_public_schema_name()):
                return fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(sync_to_async(as_a_public_view)(), self.loop))

    def host_url(self, subdomain: str, scheme: str = "http") -> str:
        return f"{scheme}://{subdomain}.localhost:{self.port}"
