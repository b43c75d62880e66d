"""Channel layer: in memory by default, Redis when REDIS_URL is set (several ASGI processes)."""

from .env import env

_redis_url = env.str("REDIS_URL", default="")
if _redis_url:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [_redis_url]}}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
