"""Training export: flagged agent actions as JSON Lines in the Messages API shape, streamed from a
server-side cursor in chunks, so a million actions never sit in memory at once."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from ai.models import AgentAction, PromptTemplate, ReviewJob
from ai.services.review import agent_actions_matching
from core.models import User
from core.platform.admin_lists import date_range_q
from core.platform.jobs import tenant_job_defer

EXPORT_JOB = "ai.training_export_run"
CHUNK = 500  # rows per fetch from the server-side cursor (~2.5 KB of text each)
_FIELDS = ("id", "timestamp", "agent_type", "model", "input_prompt", "output_text", "corrected_output", "feedback")

# A chat action's collections are those of the documents its answer cited (Message.sources).
_CITED_IN_COLLECTION = """
    SELECT m.agent_action_id FROM ai_message m
    CROSS JOIN LATERAL jsonb_array_elements(m.sources) AS source
    JOIN ai_document d ON d.id = (source ->> 'document_id')::bigint
    WHERE m.agent_action_id IS NOT NULL AND d.collection_id = %s
"""


def training_actions(
    *,
    since: date | None = None,
    until: date | None = None,
    model: str = "",
    collection_id: int | None = None,
    actions: QuerySet[AgentAction] | None = None,
) -> QuerySet[AgentAction]:
    """The flagged actions to export (oldest first), narrowed by day, model and collection."""
    chosen = (AgentAction.objects.all() if actions is None else actions).filter(flagged_for_training=True)
    chosen = chosen.filter(date_range_q("timestamp", since=since, until=until))
    if model:
        chosen = chosen.filter(model=model)
    if collection_id is not None:
        cited = RawSQL(_CITED_IN_COLLECTION, [collection_id])  # noqa: S611 - our SQL, the id a parameter
        chosen = chosen.filter(Q(document__collection_id=collection_id) | Q(id__in=cited))
    return chosen.order_by("timestamp", "id").only(*_FIELDS)


def training_example(action: AgentAction, *, system: str) -> dict[str, Any]:
    """One action as a Messages API request with its answer: the reviewer's corrected output when
    there is one, else what the model said."""
    answer = action.corrected_output or action.output_text
    return {
        "system": system,
        "messages": [
            {"role": "user", "content": action.input_prompt},
            {"role": "assistant", "content": answer},
        ],
        "metadata": {
            "action_id": action.pk,
            "agent_type": action.agent_type,
            "model": action.model,
            "timestamp": action.timestamp.isoformat(),
            "corrected": bool(action.corrected_output),
            "feedback": action.feedback,
        },
    }


def training_lines(actions: QuerySet[AgentAction]) -> Iterator[str]:
    """JSON Lines, one per action, read through a server-side cursor ``CHUNK`` rows at a time."""
    systems = dict(PromptTemplate.objects.filter(active=True).values_list("name", "system_prompt"))
    for action in actions.iterator(chunk_size=CHUNK):
        line = training_example(action, system=systems.get(action.agent_type, ""))
        yield json.dumps(line, ensure_ascii=False) + "\n"


def training_export_write(
    *, actions: QuerySet[AgentAction], out: IO[str], progress: Callable[[int], None] | None = None
) -> int:
    """Write ``actions`` to ``out``; ``progress(count)`` after each chunk. Returns the count."""
    count = 0
    for line in training_lines(actions):
        out.write(line)
        count += 1
        if progress is not None and count % CHUNK == 0:
            progress(count)
    return count


def training_criteria_actions(criteria: Mapping[str, str]) -> QuerySet[AgentAction]:
    """An export job's actions: the review screen's criteria, then the export's own rules."""
    return training_actions(actions=agent_actions_matching(criteria=criteria))


def training_export_start(*, actor: User, criteria: Mapping[str, str]) -> ReviewJob:
    """An export of the flagged actions among those ``criteria`` pick, as a job (see ``ReviewJob``)."""
    newest = AgentAction.objects.order_by("-id").values_list("id", flat=True).first() or 0
    job = ReviewJob.objects.create(
        kind=ReviewJob.Kind.EXPORT, criteria=dict(criteria), upto_id=newest, created_by=actor
    )
    tenant_job_defer(EXPORT_JOB, job_id=job.pk)
    return job


def _exports_folder() -> Path:
    folder = Path(settings.EXPORTS_DIR) / "training"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def training_export_path(job: ReviewJob) -> Path | None:
    """Where a finished export job's file is (None before it is written)."""
    return _exports_folder() / job.file_name if job.file_name else None


def training_export_run(*, job_id: int) -> None:
    """The export job: stream the actions into a file in EXPORTS_DIR, saving progress per chunk."""
    job = ReviewJob.objects.get(pk=job_id)
    ReviewJob.objects.filter(pk=job.pk).update(state=ReviewJob.State.RUNNING)
    actions = training_criteria_actions(job.criteria).filter(id__lte=job.upto_id)
    name = f"{connection.schema_name}-{job.pk}-{secrets.token_urlsafe(12)}.jsonl"  # type: ignore[attr-defined]
    part = _exports_folder() / f"{name}.part"

    def progress(done: int) -> None:
        ReviewJob.objects.filter(pk=job.pk).update(done=done)

    try:
        with part.open("w", encoding="utf-8") as out:
            count = training_export_write(actions=actions, out=out, progress=progress)
        os.replace(part, _exports_folder() / name)
    except Exception as exc:
        part.unlink(missing_ok=True)
        ReviewJob.objects.filter(pk=job.pk).update(
            state=ReviewJob.State.FAILED, error=str(exc)[:2000], finished=timezone.now()
        )
        raise
    ReviewJob.objects.filter(pk=job.pk).update(
        state=ReviewJob.State.DONE, done=count, file_name=name, finished=timezone.now()
    )
