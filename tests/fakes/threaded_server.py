"""The lifecycle the thread-served fakes share: an HTTP server on 127.0.0.1 in a daemon thread,
started by ``start()`` or ``with``, stopped by ``stop()``."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Self


class ThreadedFake:
    """Subclasses build their server in ``_server_make`` (bound to 127.0.0.1, port 0)."""

    name = "fake"
    poll_interval = 0.5  # serve_forever's; how soon stop() is noticed

    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def _server_make(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = self._server_make()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=self.name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])
