"""The chat WebSocket: thin adapter from client frames to the chat services and back.

A socket follows one answer at a time (a new question, or a resume). Closing the socket stops
following, not the answer: that runs on in its own task (ai.chat.answers) and may be
resumed from this or another socket; a ``cancel`` frame stops it. A socket whose tenant, membership
or credential is gone is closed: on its next frame, or at once when a revocation is announced
(tenants.services.status), after the answer it follows has ended with ``access_revoked``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from ai.chat.answers import Frames, chat_answer_cancel, chat_answer_follow, chat_answer_open
from ai.chat.services import (
    ConnectionNotAllowed,
    Question,
    chat_message_validate,
    chat_prepare_async,
    chat_resume_validate,
    error_frame,
)
from core.platform.database_steps import database_step
from core.platform.exceptions import ApplicationError
from core.platform.json import json_loads
from tenants.models import Tenant
from tenants.services.status import tenant_channel_group

# Close codes in the 4000 range are ours: 4403 = refused (no tenant, not a member, not active, or the
# credential is gone: checked at the handshake and again before every client frame).
CLOSE_REFUSED = 4403
CLOSE_UPSTREAM_ERROR = 4502
# An answer stops within a second of a revocation (ai.chat.answers); past this the socket
# closes without its last frame.
REVOKED_ANSWER_WAIT_SECONDS = 3.0


class ChatConsumer(AsyncWebsocketConsumer):
    following: asyncio.Task[None] | None = None
    message_id: int | None = None  # the answer this socket follows or last followed
    tenant_group: str | None = None
    closed = False

    async def dispatch(self, message: dict[str, Any]) -> None:
        """As channels' ``AsyncConsumer.dispatch``, without its ``close_old_connections`` before each
        message: a hop to asgiref's one sync thread (shared by every socket of the process) and
        back, to close connections this consumer never opens there. Its database work runs in
        database steps (core.platform.database_steps), whose threads give their connections back
        after each step."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """As channels' (whose ``groups`` this consumer leaves empty: it leaves its tenant group in
        ``disconnect``), without the same hop."""
        await self.disconnect(message["code"])
        raise StopConsumer

    async def connect(self) -> None:
        tenant = self.scope.get("tenant")
        api_key = self.scope.get("api_key")
        # A person needs a membership; a program a key of this tenant that may write (a chat
        # turn stores messages and spends tokens, like POST /api/chat/).
        allowed = self.scope.get("membership") is not None or (api_key is not None and api_key.allows_write)
        if tenant is None or tenant.status != Tenant.Status.ACTIVE or not allowed:
            await self.close(code=CLOSE_REFUSED)  # before accept: the handshake is refused (HTTP 403)
            return
        # Joined only once the checks above passed: revocations reach this socket through it.
        self.tenant_group = tenant_channel_group(tenant.schema_name)
        await self.channel_layer.group_add(self.tenant_group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.tenant_group is not None:
            await self.channel_layer.group_discard(self.tenant_group, self.channel_name)
        await self._stop_following()  # the answer itself goes on, waiting for a resume

    async def access_revoked(self, event: dict[str, Any]) -> None:
        """Access to the tenant ended for everyone, or for ``user_id`` (tenants.services.status)."""
        user_id = event.get("user_id")
        if user_id is not None and user_id != self.scope["user"].pk:
            return
        if await self._still_allowed():
            return  # undone meanwhile, or (a person's other session) not this credential
        following = self.following
        if following is not None and not following.done():
            # Its answer ends with access_revoked where it runs; the relay sends that and closes.
            await asyncio.wait({following}, timeout=REVOKED_ANSWER_WAIT_SECONDS)
        await self._refuse()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            payload = json_loads(text_data or "")  # a frame nested too deep is a ValueError too
        except ValueError:
            payload = None
        kind = payload.get("type") if isinstance(payload, dict) else None
        question = _question_or_none(payload) if kind not in ("cancel", "resume") and not self._busy() else None
        if question is not None:
            # A question is re-authorised first thing in its turn's database step: one step, not two.
            self._follow(self._ask(question))
            return
        if not await self._still_allowed():
            await self._refuse()
            return
        try:
            if payload is None:
                raise ApplicationError("Frames must be JSON text.", code="bad_request")
            if kind == "cancel":
                await self._cancel()
                return
            if self._busy():
                raise ApplicationError(
                    "An answer is still streaming; cancel it or wait.", code="stream_in_progress", status=409
                )
            if kind == "resume":
                message_id, after = chat_resume_validate(payload)
                self._follow(self._resume(message_id, after))
            else:
                self._follow(self._ask(chat_message_validate(payload)))
        except ApplicationError as exc:
            await self._send_error(exc)

    def _busy(self) -> bool:
        return self.following is not None and not self.following.done()

    async def _still_allowed(self) -> bool:
        # Tenant status, membership and the handshake's credential, read again for every frame.
        reauthorise = self.scope.get("reauthorise")
        return reauthorise is not None and bool(await database_step(reauthorise)())

    async def _refuse(self) -> None:
        with contextlib.suppress(ApplicationError):  # an answer whose log has expired: nothing to stop
            await self._cancel()
        await self._close(CLOSE_REFUSED)

    async def _close(self, code: int) -> None:
        if not self.closed:
            self.closed = True
            await self.close(code=code)

    def _follow(self, opening: Awaitable[Frames]) -> None:
        self.following = asyncio.create_task(self._relay(opening))

    async def _ask(self, question: Question) -> Frames:
        turn = await chat_prepare_async(
            tenant=self.scope["tenant"],
            user=self.scope["user"],
            question=question,
            still_allowed=self.scope.get("reauthorise") or _never,
        )
        self.message_id = turn.message_id
        return await chat_answer_open(turn=turn)

    async def _resume(self, message_id: int, after: int) -> Frames:
        frames = await chat_answer_follow(
            tenant=self.scope["tenant"], user=self.scope["user"], message_id=message_id, after=after
        )
        self.message_id = message_id
        return frames

    async def _relay(self, opening: Awaitable[Frames]) -> None:
        try:
            frames = await opening
        except ConnectionNotAllowed:
            await self._close(CLOSE_REFUSED)  # it followed no answer: nothing to cancel
            return
        except ApplicationError as exc:
            await self._send_error(exc)  # a refusal (quota, unknown conversation or answer): the socket stays usable
            return
        try:
            async for batch in frames:
                for frame in batch:
                    await self.send(text_data=json.dumps(frame))
                    if frame["type"] == "error":
                        code = frame["error"]["code"]
                        if code == "access_revoked":
                            await self._close(CLOSE_REFUSED)
                        elif code != "quota_exceeded":  # a refusal keeps the socket usable
                            await self._close(CLOSE_UPSTREAM_ERROR)
                        return
        except OSError:
            return  # the client went away mid-frame (uvicorn's ClientDisconnected); the answer goes on
        finally:
            await frames.aclose()

    async def _cancel(self) -> None:
        await self._stop_following()
        if self.message_id is not None:
            await chat_answer_cancel(tenant=self.scope["tenant"], user=self.scope["user"], message_id=self.message_id)

    async def _stop_following(self) -> None:
        following = self.following
        if following is not None and not following.done():
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)

    async def _send_error(self, exc: ApplicationError) -> None:
        await self.send(text_data=json.dumps(error_frame(exc)))


def _question_or_none(payload: Any) -> Question | None:
    try:
        return chat_message_validate(payload)
    except ApplicationError:
        return None  # refused with its reason once the connection is known to be still allowed


def _never() -> bool:
    return False
