"""A pool of ONE connection shared by two tenants' HTTP requests and WebSocket chats, interleaved:
every row each of them gets back is its own. The same traffic against a server whose per-checkout
search_path reset is removed shows rows of the other tenant, which proves the test can fail."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.models import Conversation, Document, Message
from ai.services.documents import document_create
from tests.ai.chat_client import ask, ws_connect
from tests.ai.factories import owner_reader
from tests.processes import ServedProcess, committed

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

ROUNDS = 30
CONCURRENCY = 6


@pytest.fixture(scope="module")
def handbooks(django_db_setup, django_db_blocker):  # noqa: ANN001
    """Each session tenant gets a handbook (committed and ingested) whose title names the tenant."""
    worlds = django_db_setup
    started = timezone.now()
    with django_db_blocker.unblock():
        for world in worlds.values():
            name = world.tenant.name

            def create(world=world, name=name) -> None:
                with tenant_context(world.tenant), transaction.atomic():
                    document_create(
                        user=None,
                        reader=owner_reader(world.tenant),
                        title=f"{name} pool handbook",
                        content=f"The {name} pool handbook says the office opens at eight and closes at six.",
                    )

            committed(create)
    yield worlds

    # The worlds are the session's: leave them as other test files expect them, without this file's
    # handbooks and the conversations its traffic made.
    def remove() -> None:
        for world in worlds.values():
            with tenant_context(world.tenant):
                Conversation.objects.filter(created__gte=started).delete()
                Document.objects.filter(title=f"{world.tenant.name} pool handbook").delete()

    with django_db_blocker.unblock():
        committed(remove)


async def traffic(
    server: ServedProcess, worlds: dict, rounds: int, *, answer_timeout: float = 30
) -> tuple[int, list[str], dict[str, dict[int, str]]]:
    """Interleaved document lists and chats for acme and globex; returns (answers, wrong rows seen,
    and per tenant the answers streamed: message id -> text)."""
    wrong: list[str] = []
    answers = 0
    streamed: dict[str, dict[int, str]] = {"acme": {}, "globex": {}}
    order = itertools.cycle(["acme", "globex"])

    async def one(client: httpx.AsyncClient, name: str, round_: int) -> None:
        nonlocal answers
        world = worlds[name]
        prefix = world.tenant.name
        if round_ % 3:
            response = await client.get(
                f"{server.url}/api/documents/",
                headers={"Host": f"{name}.localhost", "Authorization": f"Token {world.member_token}"},
            )
            if response.status_code != 200:
                wrong.append(f"{name}: HTTP {response.status_code}")
                return
            titles = [row["title"] for row in response.json()["results"]]
        else:
            async with await ws_connect(server, name, token=world.member_token) as ws:
                frames = await ask(ws, "When does the office open?", timeout=answer_timeout)
            if frames[-1]["type"] != "done":
                wrong.append(f"{name}: {frames[-1]}")
                return
            titles = [source["title"] for source in frames[-1]["sources"]]
            text = "".join(frame["token"] for frame in frames if frame["type"] == "token")
            streamed[name][frames[-1]["message_id"]] = text
        answers += 1
        wrong.extend(f"{name} saw {title!r}" for title in titles if not title.startswith(prefix))

    async with httpx.AsyncClient(timeout=30) as client:
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def limited(name: str, round_: int) -> None:
            async with semaphore:
                try:
                    await one(client, name, round_)
                except Exception as exc:  # noqa: BLE001 - a broken server may fail in any way; all are wrong
                    wrong.append(f"{name}: {exc!r}")

        await asyncio.gather(*(limited(next(order), round_) for round_ in range(rounds * 2)))
    return answers, wrong, streamed


def rows_written(worlds: dict, streamed: dict[str, dict[int, str]]) -> list[str]:
    """Each answer saved in its own tenant's schema, complete, with exactly one agent action."""
    wrong = []
    for name, answers in streamed.items():
        with tenant_context(worlds[name].tenant):
            for message in Message.objects.filter(id__in=answers).select_related("agent_action"):
                if message.status != Message.Status.OK or message.content != answers[message.id]:
                    wrong.append(f"{name} message {message.id} is {message.status!r}: {message.content[:40]!r}")
                elif message.agent_action is None or message.agent_action.conversation_id != message.conversation_id:
                    wrong.append(f"{name} message {message.id} lost its agent action")
    return wrong


@pytest.mark.parametrize("flags, leaks", [((), False), (("--without-search-path-reset",), True)])
def test_two_tenants_over_a_pool_of_one_connection_see_only_their_own_rows(handbooks, tmp_path, flags, leaks):
    timeout = "2" if leaks else "60"
    env = {"DB_POOL_MIN_SIZE": "1", "DB_POOL_MAX_SIZE": "1", "DB_POOL_TIMEOUT": timeout, "TASK_MODE": "eager"}
    server = ServedProcess(*flags, env=env, log=tmp_path / "server.log").wait_ready()
    try:
        # A broken server stalls (on pool timeouts, or an answer that never ends): a few rounds, each
        # given a few seconds, are enough to see it leak.
        rounds, answer_timeout = (4, 5) if leaks else (ROUNDS, 30)
        answers, wrong, streamed = asyncio.run(traffic(server, handbooks, rounds, answer_timeout=answer_timeout))
    finally:
        server.stop()
    wrong += committed(rows_written, handbooks, streamed)
    if leaks:
        assert wrong, "without the reset a pooled connection keeps another tenant's search_path"
    else:
        assert wrong == []
        assert answers == ROUNDS * 2
