"""The chat WebSocket: thin adapter from client frames to the chat service and back."""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from ai.services.chat import chat_message_validate, chat_prepare, chat_stream, error_frame
from core.platform.exceptions import ApplicationError
from tenants.models import Tenant

# Close codes in the 4000 range are ours: 4403 = refused (no tenant, not a member, not active).
CLOSE_REFUSED = 4403
CLOSE_UPSTREAM_ERROR = 4502


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        tenant = self.scope.get("tenant")
        if tenant is None or tenant.status != Tenant.Status.ACTIVE or self.scope.get("membership") is None:
            await self.close(code=CLOSE_REFUSED)  # before accept: the handshake is refused (HTTP 403)
            return
        self.answer: asyncio.Task[None] | None = None
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self._cancel_answer()

    async def _cancel_answer(self) -> None:
        answer = getattr(self, "answer", None)
        if answer is not None and not answer.done():
            answer.cancel()  # closes the upstream request; the service saves the partial answer
            await asyncio.gather(answer, return_exceptions=True)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            payload = json.loads(text_data or "")
        except ValueError:
            await self._send_error(ApplicationError("Frames must be JSON text.", code="bad_request"))
            return
        if isinstance(payload, dict) and payload.get("type") == "cancel":
            await self._cancel_answer()
            return
        if self.answer is not None and not self.answer.done():
            await self._send_error(
                ApplicationError(
                    "An answer is still streaming; cancel it or wait.", code="stream_in_progress", status=409
                )
            )
            return
        try:
            message, conversation_id = chat_message_validate(payload)
        except ApplicationError as exc:
            await self._send_error(exc)
            return
        self.answer = asyncio.create_task(self._answer(message, conversation_id))

    async def _answer(self, message: str, conversation_id: int | None) -> None:
        try:
            turn = await database_sync_to_async(chat_prepare)(
                tenant=self.scope["tenant"], user=self.scope["user"], message=message, conversation_id=conversation_id
            )
        except ApplicationError as exc:
            await self._send_error(exc)  # a refusal (quota, unknown conversation): the socket stays usable
            return
        frames = chat_stream(turn=turn)
        try:
            async for frame in frames:
                await self.send(text_data=json.dumps(frame))
                if frame["type"] == "error":
                    await self.close(code=CLOSE_UPSTREAM_ERROR)
                    return
        finally:
            await frames.aclose()

    async def _send_error(self, exc: ApplicationError) -> None:
        await self.send(text_data=json.dumps(error_frame(exc)))
