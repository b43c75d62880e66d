"""`manage.py up`'s demo tenant comes with sample documents, once: when it is created."""

from __future__ import annotations

from django_tenants.utils import tenant_context

from ai.models import Document
from config import bootstrap as project_bootstrap
from tenants.models import Tenant


def test_the_demo_tenant_is_created_with_sample_documents_to_index(db, tmp_path, monkeypatch):
    class Report:
        ok = True

    monkeypatch.setattr(project_bootstrap, "platform_migrate", lambda **kw: Report())
    assert not Tenant.objects.filter(subdomain=project_bootstrap.DEMO_SUBDOMAIN).exists()

    project_bootstrap.platform_bootstrap(data_dir=tmp_path)

    demo = Tenant.objects.get(subdomain=project_bootstrap.DEMO_SUBDOMAIN)
    with tenant_context(demo):
        documents = list(Document.objects.order_by("title").values_list("title", "source_name", "status"))
    assert documents == [
        ("Employee handbook", "employee-handbook.md", "pending"),  # the job worker indexes them
        ("Product FAQ", "product-FAQ.md", "pending"),
        ("Security policy", "security-policy.md", "pending"),
    ]
