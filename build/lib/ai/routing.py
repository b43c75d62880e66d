"""WebSocket routes of a tenant host."""

from django.urls import path

from ai.consumers import ChatConsumer

websocket_urlpatterns = [path("ws/chat/", ChatConsumer.as_asgi())]
