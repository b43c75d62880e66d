"""The database refuses UPDATE and DELETE on the audit tables; retention is the one way to delete.

A DELETE of an entry goes through only when its transaction has set ``strata.audit_prune_before``
(``set_config(..., true)``: transaction-local, gone at commit) and the entry is older than that
instant; ``tenants.audit.services.audit_prune`` is the one caller. Marks (audit_auditprune) are never
deleted. The trigger stops the application's own mistakes (ORM deletes, cascades, an admin action,
a raw UPDATE); the hash chain is what detects anyone who gets past it (a superuser disabling it).
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prune_before text := current_setting('strata.audit_prune_before', true);
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_auditentry'
       AND coalesce(prune_before, '') <> '' AND OLD.at < prune_before::timestamptz THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""

TRIGGERS = """
CREATE TRIGGER audit_auditentry_append_only BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_auditprune_append_only BEFORE UPDATE OR DELETE ON audit_auditprune
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"""

REVERSE = """
DROP TRIGGER IF EXISTS audit_auditentry_append_only ON audit_auditentry;
DROP TRIGGER IF EXISTS audit_auditprune_append_only ON audit_auditprune;
DROP FUNCTION IF EXISTS audit_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunSQL(FUNCTION + TRIGGERS, REVERSE)]
