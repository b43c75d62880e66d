from django_tenants.utils import tenant_context

from ai.models import AgentAction, Chunk
from billing.models import UsageEvent


def test_upload_ingest_search_summarise(acme, ingest, fake_anthropic):
    client = acme.client(acme.member_token)
    with ingest():
        created = client.post("/api/documents/", {"title": "Cats", "content": "Cats purr when they are content. " * 40}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["status"] == "pending"
    doc = client.get(f"/api/documents/{created.json()['id']}/").json()
    assert doc["status"] == "ready", doc
    with tenant_context(acme.tenant):
        assert Chunk.objects.filter(embedding__isnull=False).count() == doc["chunk_count"] > 0

    hits = client.post("/api/search/", {"query": "feline happiness sounds"}, format="json").json()["results"]
    assert hits[0]["title"] == "Cats"

    summary = client.post(f"/api/documents/{doc['id']}/summarise/")
    assert summary.status_code == 200, summary.content
    assert summary.json()["provider"] == "anthropic"
    with tenant_context(acme.tenant):
        action = AgentAction.objects.filter(agent_type="summarise").latest("id")
    event = UsageEvent.objects.get(tenant=acme.tenant, request_key=f"action:{action.id}")
    assert event.total_tokens == sum(summary.json()["usage"].values())
