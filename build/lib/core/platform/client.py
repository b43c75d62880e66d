"""The client's address behind the documented proxy chain: the one key every throttle and lockout uses.

With ``TRUSTED_PROXY_COUNT=0`` (the default) the socket peer is the client and any
``X-Forwarded-For`` header is ignored: a client can write anything there. Behind N trusted proxies
that each append the address they saw (nginx's ``$proxy_add_x_forwarded_for``), the client is the
N-th entry from the right; the entries left of it were written by the client and are never used.
This is DRF's ``NUM_PROXIES`` rule, so DRF throttles and these helpers always agree.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings


def client_ip(request: Any) -> str:
    """The address that throttles key on, for a Django or DRF request (or anything with ``META``)."""
    meta = request.META
    remote = meta.get("REMOTE_ADDR", "") or ""
    return client_ip_from(remote_addr=remote, forwarded_for=meta.get("HTTP_X_FORWARDED_FOR", ""))


def client_ip_from(*, remote_addr: str, forwarded_for: str | None) -> str:
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0 or not forwarded_for:
        return remote_addr
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if not hops:
        return remote_addr
    candidate = hops[-min(proxies, len(hops))]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        # Our own proxy always writes an address; anything else means the chain is not what the
        # settings say, and the peer is the only address we know to be real.
        return remote_addr
