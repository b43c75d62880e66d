"""The audit log: append-only in the database, chained by hash per tenant, wired to the events."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from tenants.audit.models import Action, AuditEntry
from tenants.audit.services import audit_record, audit_verify


def test_entries_chain_per_tenant_and_verify(acme, globex):
    first = audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner)
    other = audit_record(tenant=globex.tenant, action=Action.LOGIN, actor=globex.owner)
    second = audit_record(tenant=acme.tenant, action=Action.MEMBER_REMOVED, actor=acme.owner, target="x")
    assert second.prev_hash == first.hash
    assert other.prev_hash != first.hash
    assert audit_verify(tenant_id=acme.tenant.pk).ok


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_auditentry SET action = 'x' WHERE id = %s", "DELETE FROM audit_auditentry WHERE id = %s"],
)
def test_the_database_refuses_update_and_delete(acme, statement):
    entry = audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner)
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, [entry.pk])
    assert AuditEntry.objects.get(pk=entry.pk).action == Action.LOGIN
