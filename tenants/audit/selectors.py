"""Reading the audit log: one tenant's entries, filtered, newest first, a page at a time or all of it."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from core.platform.admission import connections_release
from core.platform.exceptions import ApplicationError
from core.platform.validators import ascii_integer
from tenants.audit.models import ActorType, AuditEntry

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
EXPORT_CHUNK = 1000
_ACTOR = re.compile(r"^(?P<type>[a-z]+)(?::(?P<id>\d+))?$")


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""
    action: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def from_query(cls, query: Any) -> AuditFilters:
        return cls(**{name: (query.get(name) or "").strip() for name in ("actor", "action", "since", "until")})

    def as_query(self) -> dict[str, str]:
        return {name: value for name, value in vars(self).items() if value}


def audit_entries(*, tenant_id: int, filters: AuditFilters) -> QuerySet[AuditEntry]:
    """``tenant_id``'s entries matching ``filters`` (400 for a filter that cannot be read).

    ``actor``: ``user:12``, ``key:3``, a type alone (``operator``), or an e-mail/label (exact,
    any case). ``action``: one or more names, comma-separated; ``auth.*`` matches a family.
    ``since``/``until``: an ISO date or date-time (a date alone is the whole day, in UTC).
    """
    entries = AuditEntry.objects.filter(tenant_id=tenant_id)
    if filters.actor:
        match = _ACTOR.match(filters.actor)
        if match and match["type"] in ActorType.values:
            entries = entries.filter(actor_type=match["type"])
            if match["id"]:
                entries = entries.filter(actor_id=int(match["id"]))
        else:
            entries = entries.filter(actor_label__iexact=filters.actor)
    if filters.action:
        wanted = Q()
        for name in (part.strip() for part in filters.action.split(",")):
            if name.endswith(".*"):
                wanted |= Q(action__startswith=name[:-1])
            elif name:
                wanted |= Q(action=name)
        entries = entries.filter(wanted)
    if filters.since:
        entries = entries.filter(at__gte=_instant(filters.since, "since", end=False))
    if filters.until:
        entries = entries.filter(at__lt=_instant(filters.until, "until", end=True))
    return entries


def _instant(value: str, name: str, *, end: bool) -> dt.datetime:
    try:
        # A date first: Python reads "2026-12-06" as a date-time too (midnight), which would make
        # until=<day> end where the day begins.
        day = parse_date(value)
        moment = None if day else parse_datetime(value)
    except ValueError:
        moment = day = None
    if day is not None:
        try:
            moment = dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time(), tzinfo=dt.UTC)
        except OverflowError:  # until=9999-12-31: the end of time
            moment = dt.datetime.max.replace(tzinfo=dt.UTC)
    if moment is None:
        raise ApplicationError(
            f"{name} must be an ISO date or date-time.",
            code="invalid",
            status=400,
            extra={"fields": {name: ["Invalid."]}},
        )
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, dt.UTC)
    return moment


def cursor_parse(value: str | None) -> int | None:
    if not value:
        return None
    cursor = ascii_integer(value)
    if cursor is None:
        raise ApplicationError("cursor is not one this page gave.", code="invalid", status=400)
    return cursor


def audit_page(
    entries: QuerySet[AuditEntry], *, cursor: int | None, size: int = PAGE_SIZE
) -> tuple[list[AuditEntry], int | None]:
    """One page, newest first, and the cursor of the next (None on the last page). The cursor is the
    last id shown: pages stay stable while new entries arrive."""
    if cursor is not None:
        entries = entries.filter(id__lt=cursor)
    rows = list(entries.order_by("-id")[: size + 1])
    if len(rows) > size:
        return rows[:size], rows[size - 1].pk
    return rows, None


def entry_data(entry: AuditEntry, *, chain: bool = False) -> dict[str, Any]:
    """An entry as the API and the exports show it (the exports add the chain's hashes)."""
    data: dict[str, Any] = {
        "id": entry.pk,
        "at": entry.at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "actor": {"type": entry.actor_type, "id": entry.actor_id, "label": entry.actor_label},
        "action": entry.action,
        "target": entry.target,
        "ip": entry.ip,
        "changes": entry.changes,
    }
    if chain:
        data["prev_hash"] = entry.prev_hash
        data["hash"] = entry.hash
    return data


async def audit_export(
    entries: QuerySet[AuditEntry], *, encode: Callable[[dict[str, Any]], bytes], header: bytes = b""
) -> AsyncIterator[bytes]:
    """Every entry of ``entries`` oldest first (the chain's order), up to the newest at the start,
    fetched a chunk at a time on a connection that is given back before the chunk is sent: a slow
    reader never holds a pooled connection."""
    through = await sync_to_async(_newest_id)(entries)
    if header:
        yield header
    after = 0
    while through is not None:
        chunk = await sync_to_async(_chunk)(entries, after=after, through=through)
        if not chunk:
            return
        for row in chunk:
            yield encode(row)
        after = chunk[-1]["id"]


def _newest_id(entries: QuerySet[AuditEntry]) -> int | None:
    try:
        return entries.order_by("-id").values_list("id", flat=True).first()
    finally:
        connections_release()


def _chunk(entries: QuerySet[AuditEntry], *, after: int, through: int) -> list[dict[str, Any]]:
    try:
        rows = entries.filter(id__gt=after, id__lte=through).order_by("id")[:EXPORT_CHUNK]
        return [entry_data(entry, chain=True) for entry in rows]
    finally:
        connections_release()
