"""What a page of the AI actions list costs beyond its 100 rows: no template render or static-file
lookup per row (a page spent 40% of its time rendering checkbox widgets), and no filter that reads
rows it then throws away."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from django.contrib.admin.templatetags import admin_list
from django.db import connection
from django.test.signals import template_rendered
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from core.platform import admin_lists
from tests.ai.test_agent_review_list import CHANGELIST, actions_insert, listed_ids


def test_a_page_of_actions_renders_no_template_per_row(acme):
    client = acme.session_client(acme.owner)
    with tenant_context(acme.tenant):
        actions_insert(150)
    rendered: list[str] = []

    def record(sender, template, context, **kwargs):  # noqa: ANN001, ANN003, ANN202
        rendered.append(template.name)

    template_rendered.connect(record)
    try:
        response = client.get(CHANGELIST)
    finally:
        template_rendered.disconnect(record)

    assert len(listed_ids(response)) == 100
    assert len(rendered) < 100, sorted(set(rendered))  # the page's own few dozen, none per row
    assert "django/forms/widgets/checkbox.html" not in rendered
    # Each row's checkbox is the one Django's widget renders, for the actions and "select all".
    assert (
        response.content.decode().count('class="action-select" aria-label="Select this object for an action - ') == 100
    )


def test_the_yes_no_icons_are_looked_up_once_not_per_row(acme):
    client = acme.session_client(acme.owner)
    with tenant_context(acme.tenant):
        actions_insert(150)
    client.get(CHANGELIST)
    with (
        mock.patch.object(admin_list, "static", wraps=admin_list.static) as django_static,
        mock.patch.object(admin_lists, "static", wraps=admin_lists.static) as our_static,
    ):
        response = client.get(CHANGELIST)

    content = response.content.decode()
    assert content.count("icon-yes.svg") + content.count("icon-no.svg") == 200  # reviewed and flagged, per row
    assert (
        django_static.call_count + our_static.call_count <= 3
    )  # yes, no (and unknown): built once per process, not twice per row


@pytest.mark.parametrize("status", ["error", "interrupted"])
def test_an_emptied_queue_of_unreviewed_problems_reads_no_reviewed_rows(acme, status):
    """Every error here has been reviewed (as when reviewers have worked through the queue): the
    list of errors not reviewed is empty, and finding that must not read each reviewed error."""
    client = acme.session_client(acme.owner)
    with tenant_context(acme.tenant):
        actions_insert(20_000)  # 400 errors, all reviewed
        connection.cursor().execute("UPDATE ai_agentaction SET status = %s WHERE status = 'error'", [status])
        connection.cursor().execute("ANALYZE ai_agentaction")
    url = f"{CHANGELIST}?status__exact={status}&reviewed__exact=0"
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    assert listed_ids(response) == []

    statements = [q["sql"] for q in captured if "ai_agentaction" in q["sql"] and not q["sql"].startswith("EXPLAIN")]
    with tenant_context(acme.tenant), connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT TEXT) {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            removed = sum(int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", plan))
            assert removed < 20, (sql, plan)
