"""How uvicorn serves Strata, shared by ``manage.py up``, the test server and (as CLI flags) the image.

``proxy_headers`` is off: uvicorn would otherwise replace the client address with one taken from
``X-Forwarded-For`` (for every peer with ``--forwarded-allow-ips *``), and a client could then pick
its own throttle key. The socket peer reaches Django untouched; the trusted proxy chain is applied
once, by core.platform.client with TRUSTED_PROXY_COUNT. The equivalent command line:

    uvicorn core.project.asgi:application --ws websockets-sansio --no-proxy-headers
"""

from __future__ import annotations

from typing import Any

UVICORN_OPTIONS: dict[str, Any] = {"ws": "websockets-sansio", "proxy_headers": False}
