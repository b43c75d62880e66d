"""Review as a workflow in the tenant admin: who reviewed or flagged and when, undoing, notes and
corrected outputs, the admin log, and large selections run as a job with visible progress."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django_tenants.utils import tenant_context

from ai.models import AgentAction, ReviewJob
from ai.services import review
from tests.ai.factories import AgentActionFactory
from tests.ai.test_agent_review_list import actions_insert, listed_ids

CHANGELIST = "/admin/ai/agentaction/"


def act(client, name: str, ids: list[int], **extra):  # noqa: ANN001, ANN003
    return client.post(CHANGELIST, {"action": name, "_selected_action": ids, "index": 0, **extra}, follow=True)


@pytest.mark.parametrize(
    ("do", "undo", "flag", "by", "at"),
    [
        ("mark_reviewed", "mark_unreviewed", "reviewed", "reviewed_by", "reviewed_at"),
        ("flag_for_training", "unflag", "flagged_for_training", "flagged_by", "flagged_at"),
    ],
)
def test_a_review_step_records_who_and_when_logs_it_and_can_be_undone(acme, do, undo, flag, by, at):
    with tenant_context(acme.tenant):
        chosen, other = AgentActionFactory(), AgentActionFactory()
    client = acme.session_client(acme.owner)

    done = act(client, do, [chosen.id])

    assert "1 action(s)" in done.content.decode()
    with tenant_context(acme.tenant):
        chosen.refresh_from_db()
        other.refresh_from_db()
        logged = list(LogEntry.objects.filter(object_id=str(chosen.id)).values_list("user_id", "change_message"))
    assert getattr(chosen, flag) and getattr(chosen, f"{by}_id") == acme.owner.id and getattr(chosen, at)
    assert not getattr(other, flag) and getattr(other, f"{by}_id") is None
    assert len(logged) == 1 and logged[0][0] == acme.owner.id

    act(client, undo, [chosen.id])

    with tenant_context(acme.tenant):
        chosen.refresh_from_db()
        assert LogEntry.objects.filter(object_id=str(chosen.id)).count() == 2
    assert not getattr(chosen, flag) and getattr(chosen, f"{by}_id") is None and getattr(chosen, at) is None


def test_marking_reviewed_again_keeps_the_first_reviewer(acme):
    with tenant_context(acme.tenant):
        action = AgentActionFactory()
    act(acme.session_client(acme.owner), "mark_reviewed", [action.id])
    with tenant_context(acme.tenant):
        first = AgentAction.objects.get(pk=action.pk).reviewed_at

    act(acme.session_client(acme.owner), "mark_reviewed", [action.id])

    with tenant_context(acme.tenant):
        assert AgentAction.objects.get(pk=action.pk).reviewed_at == first


def test_a_reviewer_saves_a_note_and_a_corrected_output_on_the_change_page(acme):
    with tenant_context(acme.tenant):
        action = AgentActionFactory(output_text="The office opens at 8.")
    client = acme.session_client(acme.owner)
    page = client.get(f"{CHANGELIST}{action.id}/change/").content.decode()
    assert 'name="reviewer_note"' in page and 'name="corrected_output"' in page

    client.post(
        f"{CHANGELIST}{action.id}/change/",
        {
            "reviewed": "on",
            "flagged_for_training": "on",
            "reviewer_note": "Wrong hours",
            "corrected_output": "The office opens at 9.",
        },
    )

    with tenant_context(acme.tenant):
        action.refresh_from_db()
        assert LogEntry.objects.filter(object_id=str(action.id)).exists()
    assert (action.reviewer_note, action.corrected_output) == ("Wrong hours", "The office opens at 9.")
    assert action.output_text == "The office opens at 8."
    assert action.reviewed_by_id == action.flagged_by_id == acme.owner.id
    assert action.reviewed_at and action.flagged_at


def test_a_large_selection_runs_as_a_job_with_progress_in_the_admin(
    acme, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(review, "REVIEW_IN_REQUEST_MAX", 50)
    monkeypatch.setattr(review, "BATCH", 40)
    with tenant_context(acme.tenant):
        actions_insert(200)
    client = acme.session_client(acme.owner)
    shown = listed_ids(client.get(CHANGELIST, {"status__exact": "ok"}))

    with django_capture_on_commit_callbacks() as deferred:
        response = client.post(
            f"{CHANGELIST}?status__exact=ok",
            {"action": "flag_for_training", "_selected_action": shown, "select_across": "1", "index": 0},
            follow=True,
        )

    page = response.content.decode()
    assert "running as a job" in page
    with tenant_context(acme.tenant):
        job = ReviewJob.objects.get()
        assert AgentAction.objects.filter(flagged_for_training=True, flagged_by=acme.owner).count() == 0
    assert (job.kind, job.state, job.criteria) == ("flag", "queued", {"status__exact": "ok"})
    assert f"/admin/ai/reviewjob/{job.pk}/change/" in page

    for callback in deferred:  # the worker's turn
        callback()

    with tenant_context(acme.tenant):
        job.refresh_from_db()
        ok = AgentAction.objects.filter(status="ok")
        assert ok.filter(flagged_for_training=False).count() == 0
        assert ok.filter(flagged_by=acme.owner).count() == job.done
        assert AgentAction.objects.filter(status="error", flagged_by=acme.owner).count() == 0
    assert job.state == "done" and job.done > 50
    progress = client.get(f"/admin/ai/reviewjob/{job.pk}/change/").content.decode()
    assert f"{job.done:,} done" in progress


def test_a_small_select_all_runs_in_the_request(acme):
    with tenant_context(acme.tenant):
        actions = [AgentActionFactory() for _ in range(3)]

    response = act(acme.session_client(acme.owner), "mark_reviewed", [actions[0].id], select_across="1")

    assert "3 action(s)" in response.content.decode()
    with tenant_context(acme.tenant):
        assert AgentAction.objects.filter(reviewed=True).count() == 3
        assert not ReviewJob.objects.exists()
