"""Redis, when REDIS_URL is set: the channel layer and the cache (throttles, rate limits, stream
slots) shared by every process. Unset, both live in the process's memory.

Each process keeps at most REDIS_MAX_CONNECTIONS per pool: the cache's, the channel layer's (per
event loop) and the stream log's (per event loop). Size Redis's maxclients against
processes x 3 x REDIS_MAX_CONNECTIONS. Connections carry a name per pool (CLIENT LIST)."""

from .env import env

REDIS_URL = env.str("REDIS_URL", default="")
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=50)
# Seconds an operation waits for a free pooled connection before it fails (an error, not a pile-up).
REDIS_POOL_TIMEOUT = env.float("REDIS_POOL_TIMEOUT", default=5.0)
_pool = {"max_connections": REDIS_MAX_CONNECTIONS, "timeout": REDIS_POOL_TIMEOUT}
if REDIS_URL:
    CACHES = {
        "default": {
            # Limits only: while Redis is down each process keeps its own (core.platform.cache).
            "BACKEND": "core.platform.cache.DegradingRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "pool_class": "core.platform.redis_pools.SharedBlockingConnectionPool",
                **_pool,
                "client_name": "strata-cache",
                "socket_connect_timeout": 1,
                "socket_timeout": 1,
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "core.platform.redis_pools.BoundedRedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, **_pool, "client_name": "strata-channels"}]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
