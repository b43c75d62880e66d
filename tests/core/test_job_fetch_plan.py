"""A worker plans its job fetch afresh each time, so a burst of jobs never runs on a plan made for an empty queue."""

from __future__ import annotations

import asyncio

import pytest
from procrastinate.contrib.django.utils import connector_params

from core.platform.jobs import worker_connector


async def _setting(name: str) -> str:
    connector = worker_connector(connector_params())
    await connector.open_async()
    try:
        row = await connector.execute_query_one_async(f"SELECT current_setting('{name}') AS value")
    finally:
        await connector.close_async()
    return row["value"]


@pytest.mark.django_db
def test_worker_connections_never_reuse_a_cached_fetch_plan():
    # procrastinate_fetch_job_v2 is PL/pgSQL: by default its query plan is cached per connection
    # once it has run a few times. Cached while the jobs table was (nearly) empty, that plan is a
    # nested loop of sequential scans, quadratic in the queued jobs: 100-400 ms per fetch with
    # 1,000 queued (against 1-3 ms planned afresh), until autovacuum's next ANALYZE, which made
    # no-op throughput swing from 331 jobs/s down to 24 (issue 26, item 7).
    assert asyncio.run(_setting("plan_cache_mode")) == "force_custom_plan"
