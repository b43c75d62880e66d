"""Serve the ASGI app with uvicorn in a process of its own (``python -m tests.serve_app PORT``).

``--without-search-path-reset`` sets a connection's search_path once, when the pool opens the
physical connection, instead of for every borrower: the mistake the per-checkout reset exists to
prevent. The pool isolation test runs against it to prove it can fail.
"""

from __future__ import annotations

import os
import sys


def _without_search_path_reset() -> None:
    from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantWrapper

    set_path = TenantWrapper._handle_search_path

    def once_per_physical_connection(self, cursor=None):  # noqa: ANN001, ANN202
        if not getattr(self.connection, "strata_path_set", False):
            set_path(self, cursor)
            self.connection.strata_path_set = True

    TenantWrapper._handle_search_path = once_per_physical_connection


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    if "--without-search-path-reset" in sys.argv:
        _without_search_path_reset()
    import uvicorn

    uvicorn.run(
        "config.asgi:application",
        host="127.0.0.1",
        port=port,
        lifespan="on",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
