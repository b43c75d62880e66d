"""The one ASGI application: Django for HTTP, Channels for WebSocket, both tenant-aware."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from ai.routing import websocket_urlpatterns  # noqa: E402
from core.websocket import TenantAuthMiddleware  # noqa: E402

if settings.BILLING_JOBS_IN_PROCESS:
    from billing.tasks import billing_jobs_start

    billing_jobs_start()  # does nothing unless Stripe is configured

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": TenantAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
