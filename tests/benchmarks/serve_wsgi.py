"""The same Django app under a sync WSGI server (the standard library's wsgiref, one request at a
time), for bench_request's baseline: ``python -m tests.benchmarks.serve_wsgi PORT``."""

from __future__ import annotations

import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    with make_server("127.0.0.1", int(sys.argv[1]), application, handler_class=QuietHandler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
