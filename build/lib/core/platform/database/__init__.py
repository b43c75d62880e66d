"""Strata's database backend: django-tenants' schema routing, the embedded server started on first
use, and a search_path that never outlives its borrower in the connection pool."""
