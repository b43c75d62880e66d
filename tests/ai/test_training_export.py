"""Training export: flagged actions as JSON Lines in the Messages API shape (corrected output when
there is one), filtered by day, model and collection, streamed with flat memory, from the command
and from the admin as a job; and the round trip from an asker's thumbs down to the export."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import tenant_context

from ai.management.commands import export_training as command
from ai.models import AgentAction, Collection, Message, PromptTemplate, ReviewJob
from ai.services import training_export
from tests.ai.factories import AgentActionFactory, DocumentFactory
from tests.ai.test_agent_review_list import listed_ids
from tests.ai.test_feedback import answered, url

CHANGELIST = "/admin/ai/agentaction/"


def export(world, **options) -> list[dict]:  # noqa: ANN001, ANN003
    out = io.StringIO()
    arguments = [f"--{name}={value}" for name, value in options.items()]
    call_command("export_training", world.tenant.subdomain, *arguments, stdout=out, stderr=io.StringIO())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_ten_thousand_flagged_actions_stream_as_messages_with_flat_memory(acme, tmp_path, capsys, monkeypatch):
    with tenant_context(acme.tenant), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO ai_agentaction (timestamp, agent_type, status, provider, model, input_prompt, output_text,
                error, input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens,
                latency_ms, reviewed, flagged_for_training, corrected_output)
            SELECT now() - make_interval(secs => g), 'chat', 'ok', 'anthropic', 'claude-sonnet-4-6',
                'Question ' || g || ': ' || repeat('how do refunds work for annual plans? ', 42),
                'Answer ' || g || ': ' || repeat('refunds are prorated. ', 32), '', 400, 180, 0, 0, 900,
                true, g <= 10000, CASE WHEN g % 1000 = 0 THEN 'Corrected ' || g ELSE '' END
            FROM generate_series(1, 10100) g
            """
        )
        system = PromptTemplate.objects.get(name="chat", active=True).system_prompt
    target = tmp_path / "training.jsonl"
    samples = []
    real_write = training_export.training_export_write

    def sampled(**kwargs):  # noqa: ANN003, ANN202 - samples the process's memory after every chunk
        return real_write(**kwargs, progress=lambda done: samples.append((done, rss_bytes())))

    monkeypatch.setattr(command, "training_export_write", sampled)
    before = rss_bytes()
    tracemalloc.start()
    try:
        call_command("export_training", acme.tenant.subdomain, f"--output={target}", stderr=io.StringIO())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    lines = target.read_text().splitlines()
    size = target.stat().st_size
    rss_growth = max(rss for _, rss in samples) - before
    with capsys.disabled():
        print(
            f"\nexport of {len(lines):,} actions ({size / 1e6:.1f} MB): Python allocations peaked at "
            f"{peak / 1e6:.1f} MB, RSS grew {rss_growth / 1e6:.1f} MB (samples every {training_export.CHUNK} rows)"
        )
    assert len(lines) == 10_000
    first = json.loads(lines[0])
    assert first["system"] == system
    assert [turn["role"] for turn in first["messages"]] == ["user", "assistant"]
    assert first["messages"][0]["content"].startswith("Question 10000: how do refunds work")
    assert first["messages"][1]["content"] == "Corrected 10000"  # oldest first: g = 10000 is the oldest
    assert json.loads(lines[1])["messages"][1]["content"].startswith("Answer 9999: refunds are prorated.")
    assert sum(json.loads(line)["metadata"]["corrected"] for line in lines) == 10
    # Held in memory at once, the export would take its size again (and more): it takes a few chunks.
    assert peak < size / 4, (peak, size)
    assert rss_growth < size / 2, (rss_growth, size)


def test_the_export_filters_by_day_model_and_collection(acme):
    with tenant_context(acme.tenant):
        shelf = Collection.objects.create(name="Policies")
        policy = DocumentFactory(collection=shelf)
        elsewhere = DocumentFactory()
        summary = AgentActionFactory(flagged_for_training=True, document=policy, model="claude-haiku-4-5")
        cited = AgentActionFactory(agent_type="chat", flagged_for_training=True)
        chat_conversation = answered(acme, acme.member)[0]
        Message.objects.create(
            conversation=chat_conversation,
            role="assistant",
            agent_action=cited,
            sources=[{"document_id": policy.id, "title": policy.title}],
        )
        other = AgentActionFactory(flagged_for_training=True, document=elsewhere)
        old = AgentActionFactory(flagged_for_training=True)
        AgentAction.objects.filter(pk=old.pk).update(timestamp="2024-01-15T10:00:00Z")
        AgentActionFactory(flagged_for_training=False, document=policy)  # not flagged: never exported

    def ids(**options) -> set[int]:  # noqa: ANN003
        return {line["metadata"]["action_id"] for line in export(acme, **options)}

    assert ids() == {summary.id, cited.id, other.id, old.id}
    assert ids(collection=shelf.id) == {summary.id, cited.id}
    assert ids(model="claude-haiku-4-5") == {summary.id}
    assert ids(until="2024-12-31") == {old.id}
    assert ids(since="2025-01-01") == {summary.id, cited.id, other.id}


def test_from_thumbs_down_to_the_review_queue_to_the_training_export(
    acme, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.EXPORTS_DIR = str(tmp_path)
    conversation, answer, action = answered(acme, acme.member)
    acme.client(acme.member_token).post(
        url(conversation, answer), {"rating": "down", "comment": "Level -3 since May"}, format="json"
    )
    admin = acme.session_client(acme.owner)
    queue = listed_ids(admin.get(CHANGELIST, {"feedback": "down_unreviewed"}))
    assert queue == [action.id]

    admin.post(
        f"{CHANGELIST}{action.id}/change/",
        {"reviewed": "on", "flagged_for_training": "on", "reviewer_note": "", "corrected_output": "Level -3."},
    )
    assert listed_ids(admin.get(CHANGELIST, {"feedback": "down_unreviewed"})) == []
    with django_capture_on_commit_callbacks(execute=True):
        started = admin.post(
            CHANGELIST,
            {"action": "export_training", "_selected_action": [action.id], "index": 0},
            follow=True,
        )
    assert "runs as a job" in started.content.decode()

    with tenant_context(acme.tenant):
        job = ReviewJob.objects.get(kind="export")
    assert (job.state, job.done) == ("done", 1)
    page = admin.get(f"/admin/ai/reviewjob/{job.pk}/change/").content.decode()
    assert f"/admin/ai/reviewjob/{job.pk}/download/" in page
    download = admin.get(f"/admin/ai/reviewjob/{job.pk}/download/")
    lines = b"".join(download.streaming_content).decode().splitlines()
    example = json.loads(lines[0])
    assert example["messages"][1] == {"role": "assistant", "content": "Level -3."}
    assert example["metadata"]["feedback"] == "down"
    assert Path(tmp_path, "training", job.file_name).is_file()
    other = acme.session_client(acme.owner)
    assert other.get(f"/admin/ai/reviewjob/{job.pk + 1000}/download/").status_code == 404


@pytest.mark.parametrize("option", [{"since": "yesterday"}, {"collection": "policies"}])
def test_bad_options_are_refused(acme, option):
    with pytest.raises(Exception):  # noqa: B017, PT011 - argparse's usage error, whatever its class
        export(acme, **option)
