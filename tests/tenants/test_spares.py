from django.db import connection
from django_tenants.utils import schema_context

from tenants.services.provisioning import SPARE_PREFIX, _spare_names, spares_refill, tenant_template_ensure
from tests.conftest import host_client
from tests.factories import PASSWORD


def column_type_and_index(schema: str) -> tuple[str, bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'ai_chunk' AND a.attname = 'embedding'",
            [schema],
        )
        column = cursor.fetchone()[0]
        cursor.execute(
            "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = 'chunk_embedding_hnsw'", [schema]
        )
        return column, cursor.fetchone() is not None


def test_spares_are_full_clones_with_their_vector_index(db, settings):
    settings.TENANT_SPARE_SCHEMAS = 2

    spares_refill()
    spares = _spare_names()

    assert len(spares) == 2 and all(name.startswith(SPARE_PREFIX) for name in spares)
    for name in spares:
        assert column_type_and_index(name) == ("vector(384)", True)


def test_a_signup_takes_a_spare_and_the_refill_replaces_it(
    db, settings, unique_subdomain, django_capture_on_commit_callbacks
):
    settings.TENANT_SPARE_SCHEMAS = 2
    spares_refill()
    before = set(_spare_names())

    with django_capture_on_commit_callbacks(execute=False) as refills:
        response = host_client("localhost").post(
            "/api/signup/",
            {
                "organisation": "Spare Co",
                "subdomain": unique_subdomain,
                "email": f"o@{unique_subdomain}.test",
                "password": PASSWORD,
            },
            format="json",
        )
    assert response.status_code == 201
    after_signup = set(_spare_names())
    assert len(after_signup) == 1 and after_signup < before  # one spare was renamed into place
    assert column_type_and_index(f"t_{unique_subdomain}") == ("vector(384)", True)

    tenant_client = host_client(f"{unique_subdomain}.localhost", response.json()["token"])
    assert tenant_client.post("/api/documents/", {"title": "a", "content": "b"}, format="json").status_code == 201

    for callback in refills:
        callback()
    assert len(_spare_names()) == 2


def test_a_template_change_drops_the_spares(db, settings):
    settings.TENANT_SPARE_SCHEMAS = 2
    spares_refill()
    assert len(_spare_names()) == 2
    with schema_context(settings.TENANT_BASE_SCHEMA), connection.cursor() as cursor:
        # As if a deploy brought a migration the template (and so every spare) lacks: the newest
        # ai migration (its column, and its row) is taken out of the template.
        cursor.execute("ALTER TABLE ai_agentaction DROP COLUMN api_key_id")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'ai' AND name = '0003_agentaction_api_key'")

    assert tenant_template_ensure() is True

    assert _spare_names() == []
