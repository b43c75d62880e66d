"""The one ASGI application: Django for HTTP (behind a limit on the body's size; its middleware run
in one hand-off to the request's thread, core.platform.asgi_handler), Channels for WebSocket, both
tenant-aware, and a lifespan handler that warms the embedding model when the server starts (not on
import)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from core.platform.asgi_handler import one_hop_asgi_application  # noqa: E402

django_asgi_app = one_hop_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from ai.routing import websocket_urlpatterns  # noqa: E402
from config.lifespan import Lifespan  # noqa: E402
from config.request_limits import RequestBodyLimit  # noqa: E402
from tenants.sockets import TenantAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": RequestBodyLimit(django_asgi_app),
        "websocket": TenantAuthMiddleware(URLRouter(websocket_urlpatterns)),
        "lifespan": Lifespan(),
    }
)
