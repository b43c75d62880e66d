"""The tenant audit log: ``audit_record`` is the one way to write it (see services)."""
