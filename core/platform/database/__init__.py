"""Strata's database backend: django-tenants' schema routing, the embedded server started on first
use, and a search_path set anew for each borrower of a pooled connection."""
