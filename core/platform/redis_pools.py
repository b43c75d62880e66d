"""Redis connections bounded per process: blocking pools (a burst waits for a free connection, then
fails after REDIS_POOL_TIMEOUT) for the cache and the channel layer, which the settings name."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import redis
import redis.asyncio
from channels_redis.core import RedisChannelLayer


class SharedBlockingConnectionPool(redis.BlockingConnectionPool):
    """The cache's pool: one per process and URL, whichever cache object asks for it.

    Django makes a cache object per thread and per async task, each with a pool of its own that
    nothing closes: bursts of requests or sockets left hundreds of connections open. Shared, the
    pool's ``max_connections`` bounds the process."""

    _shared: ClassVar[dict[tuple[str, str], SharedBlockingConnectionPool]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SharedBlockingConnectionPool:
        key = (url, repr(sorted(kwargs.items())))
        with cls._shared_lock:
            pool = cls._shared.get(key)
            if pool is None:
                pool = cls._shared[key] = super().from_url(url, **kwargs)
            return pool


class BoundedRedisChannelLayer(RedisChannelLayer):  # type: ignore[misc]  # channels-redis is untyped
    """channels-redis with a blocking pool per host and event loop: its own pool raises "Too many
    connections" past ``max_connections`` instead of waiting. Each host is a dict: ``address`` and
    the pool's options (``max_connections``, ``timeout``, ``client_name``)."""

    def create_pool(self, index: int) -> redis.asyncio.BlockingConnectionPool:
        host = dict(self.hosts[index])
        return redis.asyncio.BlockingConnectionPool.from_url(host.pop("address"), **host)
