"""Reviewing agent actions: which actions a review screen means (its filters and search), and the
review steps (reviewed, flagged and their undoing) with who and when, logged, in the request or as a job."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.postgres.search import SearchQuery
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date

from ai.models import AgentAction, ReviewJob
from core.models import User
from core.platform.admin_lists import date_range_q, rows_count
from core.platform.jobs import tenant_job_defer

REVIEW_JOB = "ai.review_job_run"
# Larger selections run as a job: updating and logging 10k rows takes seconds of a request.
REVIEW_IN_REQUEST_MAX = 10_000
BATCH = 2_000

LATENCY_BUCKETS = {"over_5s": 5_000, "over_15s": 15_000, "over_60s": 60_000}
QUEUE = "down_unreviewed"


def _yes_no(field: str) -> Callable[[QuerySet[AgentAction], str], QuerySet[AgentAction]]:
    def apply(actions: QuerySet[AgentAction], value: str) -> QuerySet[AgentAction]:
        return actions.filter(**{field: value == "1"}) if value in ("0", "1") else actions

    return apply


def _choice(field: str, choices: Iterable[str]) -> Callable[[QuerySet[AgentAction], str], QuerySet[AgentAction]]:
    allowed = set(choices)

    def apply(actions: QuerySet[AgentAction], value: str) -> QuerySet[AgentAction]:
        return actions.filter(**{field: value}) if value in allowed else actions

    return apply


def _feedback(actions: QuerySet[AgentAction], value: str) -> QuerySet[AgentAction]:
    if value == QUEUE:  # the review queue: what people disliked and nobody has looked at yet
        return actions.filter(feedback=AgentAction.Feedback.DOWN, reviewed=False)
    if value in AgentAction.Feedback.values:
        return actions.filter(feedback=value)
    return actions


def _latency(actions: QuerySet[AgentAction], value: str) -> QuerySet[AgentAction]:
    threshold = LATENCY_BUCKETS.get(value)
    return actions.filter(latency_ms__gt=threshold) if threshold is not None else actions


def _api_key(actions: QuerySet[AgentAction], value: str) -> QuerySet[AgentAction]:
    return actions.filter(api_key_id=int(value)) if value.isdigit() else actions


def _since(actions: QuerySet[AgentAction], value: str) -> QuerySet[AgentAction]:
    return actions.filter(date_range_q("timestamp", since=_day(value)))


def _until(actions: QuerySet[AgentAction], value: str) -> QuerySet[AgentAction]:
    return actions.filter(date_range_q("timestamp", until=_day(value)))


def _day(value: str) -> Any:
    try:
        return parse_date(value)
    except ValueError:
        return None


# The review screen's criteria, by query parameter (Django's own names where it has them, so old
# links still work): the admin's filters apply these, and a bulk
# job started from a filtered screen applies the same ones again in the worker.
CRITERIA: dict[str, Callable[[QuerySet[AgentAction], str], QuerySet[AgentAction]]] = {
    "status__exact": _choice("status", AgentAction.Status.values),
    "agent_type__exact": _choice("agent_type", AgentAction.AgentType.values),
    "reviewed__exact": _yes_no("reviewed"),
    "flagged_for_training__exact": _yes_no("flagged_for_training"),
    "feedback": _feedback,
    "model": lambda actions, value: actions.filter(model=value),
    "api_key": _api_key,
    "latency": _latency,
    "since": _since,
    "until": _until,
    "q": lambda actions, value: agent_actions_search(actions, value),
    # A selection of rows on one page (comma-separated ids), for a job started from it.
    "ids": lambda actions, value: actions.filter(id__in=[int(part) for part in value.split(",") if part.isdigit()]),
}


def agent_actions_search(actions: QuerySet[AgentAction], text: str) -> QuerySet[AgentAction]:
    """Full-text search of prompts and outputs (web-search syntax: words, "a phrase", -not, or),
    on the GIN index of ``AgentAction.search``."""
    text = text.strip()
    if not text:
        return actions
    return actions.filter(search=SearchQuery(text, search_type="websearch", config="english"))


def agent_actions_matching(
    *, criteria: Mapping[str, str], actions: QuerySet[AgentAction] | None = None
) -> QuerySet[AgentAction]:
    """The actions a review screen with these query parameters lists (unknown ones are ignored)."""
    matching = AgentAction.objects.all() if actions is None else actions
    for name, value in criteria.items():
        apply = CRITERIA.get(name)
        if apply is not None and value:
            matching = apply(matching, str(value))
    return matching


def review_criteria(params: Mapping[str, Any]) -> dict[str, str]:
    """The criteria among a request's query parameters (what a job needs to find the same rows)."""
    return {name: str(params.get(name)) for name in CRITERIA if params.get(name)}


# --- Review steps --------------------------------------------------------------------------------


def _step(kind: str, actor: User | None) -> tuple[Q, dict[str, Any], str]:
    """For a review step: which rows it changes, what it sets, and the log's message."""
    now = timezone.now()
    steps: dict[str, tuple[Q, dict[str, Any], str]] = {
        ReviewJob.Kind.REVIEW: (
            Q(reviewed=False),
            {"reviewed": True, "reviewed_by": actor, "reviewed_at": now},
            "Marked reviewed",
        ),
        ReviewJob.Kind.UNREVIEW: (
            Q(reviewed=True),
            {"reviewed": False, "reviewed_by": None, "reviewed_at": None},
            "Marked not reviewed",
        ),
        ReviewJob.Kind.FLAG: (
            Q(flagged_for_training=False),
            {"flagged_for_training": True, "flagged_by": actor, "flagged_at": now},
            "Flagged for training",
        ),
        ReviewJob.Kind.UNFLAG: (
            Q(flagged_for_training=True),
            {"flagged_for_training": False, "flagged_by": None, "flagged_at": None},
            "Unflagged",
        ),
    }
    return steps[kind]


def agent_actions_review(*, actions: QuerySet[AgentAction], kind: str, actor: User | None) -> int:
    """Apply one review step (``ReviewJob.Kind``, not export) to ``actions`` in one transaction:
    each row not yet in that state changes, records who and when, and gets an admin log entry.
    Returns how many changed. For up to a few thousand rows; larger sets go through a job."""
    pending, changes, message = _step(kind, actor)
    with transaction.atomic():
        changed = list(actions.filter(pending).order_by().select_for_update().values_list("id", flat=True))
        if not changed:
            return 0
        AgentAction.objects.filter(id__in=changed).update(**changes)
        _log(changed, actor=actor, message=message)
    return len(changed)


def _log(ids: list[int], *, actor: User | None, message: str) -> None:
    if actor is None:
        return
    rows = AgentAction.objects.filter(id__in=ids).only("id", "agent_type", "status", "timestamp")
    LogEntry.objects.log_actions(
        user_id=actor.pk, queryset=rows, action_flag=CHANGE, change_message=json.dumps([{"changed": {"name": message}}])
    )


def review_start(
    *, actions: QuerySet[AgentAction], kind: str, actor: User, criteria: Mapping[str, str], selected_all: bool
) -> tuple[int, ReviewJob | None]:
    """A review step chosen in the admin: at once for a small selection, else a job over the same
    criteria (``(count, None)`` or ``(estimate, job)``)."""
    if selected_all:
        estimate, exact = rows_count(actions, exact_max=REVIEW_IN_REQUEST_MAX)
        if not exact:
            return estimate, review_job_start(kind=kind, actor=actor, criteria=criteria, estimated=estimate)
    return agent_actions_review(actions=actions, kind=kind, actor=actor), None


def review_job_start(*, kind: str, actor: User, criteria: Mapping[str, str], estimated: int) -> ReviewJob:
    """Record the job and defer it in one transaction; it works on actions recorded until now."""
    newest = AgentAction.objects.order_by("-id").values_list("id", flat=True).first() or 0
    with transaction.atomic():
        job = ReviewJob.objects.create(
            kind=kind, criteria=dict(criteria), upto_id=newest, estimated=estimated, created_by=actor
        )
        tenant_job_defer(REVIEW_JOB, job_id=job.pk)
    return job


def review_job_run(*, job_id: int) -> None:
    """Run a review job in batches (newest id first, each batch its own transaction, progress
    saved after each), so a worker stopping midway leaves whole batches and a true count."""
    job = ReviewJob.objects.get(pk=job_id)
    if job.state == ReviewJob.State.DONE:
        return
    ReviewJob.objects.filter(pk=job.pk).update(state=ReviewJob.State.RUNNING)
    actor = User.objects.filter(pk=job.created_by_id).first() if job.created_by_id else None
    pending, _, _ = _step(job.kind, actor)
    matching = agent_actions_matching(criteria=job.criteria).filter(pending)
    below = job.upto_id + 1
    try:
        while True:
            ids = list(matching.filter(id__lt=below).order_by("-id").values_list("id", flat=True)[:BATCH])
            if not ids:
                break
            with transaction.atomic():
                done = agent_actions_review(actions=AgentAction.objects.filter(id__in=ids), kind=job.kind, actor=actor)
                ReviewJob.objects.filter(pk=job.pk).update(done=job.done + done)
                job.done += done
            below = ids[-1]
    except Exception as exc:
        ReviewJob.objects.filter(pk=job.pk).update(
            state=ReviewJob.State.FAILED, error=str(exc)[:2000], finished=timezone.now()
        )
        raise
    ReviewJob.objects.filter(pk=job.pk).update(state=ReviewJob.State.DONE, finished=timezone.now())


def agent_action_review_save(*, action: AgentAction, actor: User, changed: Iterable[str]) -> None:
    """Stamp who and when on a change made on the action's own page (reviewed or flagged ticked
    or unticked); the note and corrected output are saved by the form itself."""
    now = timezone.now()
    changed = set(changed)
    if "reviewed" in changed:
        action.reviewed_by, action.reviewed_at = (actor, now) if action.reviewed else (None, None)
    if "flagged_for_training" in changed:
        action.flagged_by, action.flagged_at = (actor, now) if action.flagged_for_training else (None, None)
