"""How uvicorn serves Strata, shared by ``manage.py up``, the test server and (as CLI flags) the image.

``proxy_headers`` is off: nothing stands in front of these servers, so the socket peer is the
client (core.platform.client). Behind deploy/'s nginx the Procfile turns uvicorn's proxy headers on
for the proxy's address only (FORWARDED_ALLOW_IPS).

``ws_per_message_deflate`` is off: chat frames are a few dozen bytes each, so compressing them
saved nothing and cost a fifth of the event loop's time with 200 chats at once (and a zlib
context per socket). The equivalent command line:

    uvicorn core.project.asgi:application --ws websockets-sansio --ws-per-message-deflate false --no-proxy-headers
"""

from __future__ import annotations

from typing import Any

UVICORN_OPTIONS: dict[str, Any] = {"ws": "websockets-sansio", "ws_per_message_deflate": False, "proxy_headers": False}
