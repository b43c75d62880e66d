"""A hard allowance is never exceeded, whatever the concurrency: 15 chats (5 API keys, over SSE)
and 10 summaries at once, with 1,500 tokens left, spread over two real server processes, end with
the ledger at or under the allowance and nothing left reserved. (A turn needs room for its prompt
and 256 tokens of answer, ai.chat.services.LEAST_ANSWER_TOKENS: 1,500 lets a few through.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db.models import Sum
from django_tenants.utils import tenant_context

from ai.models import Document
from billing.models import AllowanceReservation, TenantUsagePeriod, UsageEvent
from billing.services import period_start
from tenants.models import ApiKey
from tenants.services.api_keys import api_key_create
from tests.ai.factories import world_create
from tests.processes import SPAWNED_APPLICATION_NAME, ServedProcess, committed, database_backends_end

pytestmark = [pytest.mark.django_db(transaction=False), pytest.mark.slow]

INCLUDED = 50_000
LEFT = 1_500


def _racing_tenant():
    world = world_create("Racer")
    plan = world.tenant.subscription.plan
    plan.pk, plan.slug, plan.name = None, f"race-{world.tenant.subdomain}", "Race"
    plan.is_public = False  # committed: it outlives this test, and no later one may see it offered
    plan.hard_limit, plan.included_tokens, plan.concurrent_requests = True, INCLUDED, 100
    plan.save()
    world.tenant.subscription.plan = plan
    world.tenant.subscription.save(update_fields=["plan"])
    TenantUsagePeriod.objects.update_or_create(
        tenant=world.tenant, period_start=period_start(), defaults={"tokens_used": INCLUDED - LEFT}
    )
    keys = [
        api_key_create(tenant=world.tenant, created_by=world.owner, name=f"race {i}", scope=ApiKey.Scope.WRITE)[1]
        for i in range(5)
    ]
    with tenant_context(world.tenant):
        documents = [
            Document.objects.create(title=f"Report {i}", content="A long paragraph of findings. " * 400)
            for i in range(2)
        ]
    return world, keys, [document.pk for document in documents]


@pytest.fixture(scope="module")
def servers(django_db_setup, anthropic_server, django_db_blocker, tmp_path_factory):  # noqa: ANN001
    env = {
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        "ANTHROPIC_BASE_URL": anthropic_server.base_url,
        "CHAT_CONTEXT_CHUNKS": "0",
        "DB_APPLICATION_NAME": SPAWNED_APPLICATION_NAME,
    }
    logs = tmp_path_factory.mktemp("race")
    with django_db_blocker.unblock():
        started = [ServedProcess(env=env, log=logs / f"web{i}.log") for i in range(2)]
        try:
            yield [server.wait_ready() for server in started]
        finally:
            for server in started:
                server.stop()
            database_backends_end(spawned_only=True)


def _chat(url: str, host: str, key: str, number: int) -> int:
    headers = {"Host": host, "Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    with httpx.stream(
        "POST",
        f"{url}/api/chat/",
        json={"message": f"Tell me everything, number {number}."},
        headers=headers,
        timeout=60,
    ) as response:
        for _ in response.iter_lines():
            pass
        return response.status_code


def _summarise(url: str, host: str, key: str, document_id: int) -> int:
    headers = {"Host": host, "Authorization": f"Bearer {key}"}
    return httpx.post(f"{url}/api/documents/{document_id}/summarise/", headers=headers, timeout=60).status_code


def test_concurrent_chats_and_summaries_on_two_processes_never_spend_past_a_hard_allowance(
    servers, anthropic_server, django_db_blocker
):
    anthropic_server.reset()
    anthropic_server.reply = " ".join(f"word{i}" for i in range(2_000))
    with django_db_blocker.unblock():
        world, keys, documents = committed(_racing_tenant)
    host = f"{world.tenant.subdomain}.localhost"

    with ThreadPoolExecutor(max_workers=25) as pool:
        chats = [pool.submit(_chat, servers[i % 2].url, host, keys[i % 5], i) for i in range(15)]
        summaries = [
            pool.submit(_summarise, servers[i % 2].url, host, keys[i % 5], documents[i % 2]) for i in range(10)
        ]
        statuses = [future.result() for future in chats + summaries]

    assert set(statuses) <= {200, 402, 429}, statuses
    assert 402 in statuses, f"the allowance never ran out: {statuses}"
    assert anthropic_server.requests, "no call was let through at all"
    with django_db_blocker.unblock():
        period = TenantUsagePeriod.objects.get(tenant=world.tenant, period_start=period_start())
        ledger = UsageEvent.objects.filter(tenant=world.tenant).aggregate(total=Sum("total_tokens"))["total"] or 0
        held = AllowanceReservation.objects.filter(tenant=world.tenant).count()
    assert period.tokens_used <= INCLUDED, f"spent {period.tokens_used - INCLUDED} past the allowance"
    assert ledger == period.tokens_used - (INCLUDED - LEFT)  # every call the upstream billed is on the ledger
    assert (period.reserved_tokens, held) == (0, 0)  # every reservation settled
