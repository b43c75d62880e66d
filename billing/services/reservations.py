"""Allowance reservations: before every upstream call, set aside what it may spend; settle after.

A hard allowance is a property of the ledger, not of a request: ``allowance_reserve`` grants a
call at most what is left (``included - used - reserved``) in one atomic statement that locks the
tenant's period row, so any number of concurrent calls on any number of processes can never
together spend past it. The caller caps the call's ``max_tokens`` to the grant. The call's usage
row settles the reservation (``usage_record(reservation_id=...)``, in the same transaction), and
a reservation whose process died expires: ``reservations_expire`` bills what it checkpointed
(``allowance_checkpoint``) and gives the rest back.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.models import AllowanceReservation, TenantUsagePeriod
from billing.services.quota import Allowance, quota_exceeded_error
from billing.services.usage import period_start, usage_record
from core.platform.exceptions import ApplicationError
from core.platform.sql_names import Inserted, column, table
from tenants.models import Tenant


@dataclass(frozen=True)
class Reservation:
    """A grant for one call: ``tokens`` it may spend in all (input and output), or None when the
    plan has no hard allowance; ``id`` names the row the call's usage settles."""

    id: int
    tokens: int | None

    def max_output(self, *, prompt_tokens: int, limit: int) -> int:
        """The call's ``max_tokens``: ``limit``, or less when the grant leaves less after the prompt."""
        return limit if self.tokens is None else max(0, min(limit, self.tokens - prompt_tokens))


def reserve_tokens_estimate(text_chars: int) -> int:
    """Input tokens to reserve for a prompt of ``text_chars`` characters: generous (three characters
    a token, where the ledger's own estimate is four), since the upstream counts them, not us."""
    return (text_chars + 2) // 3


_RESERVE_SQL = """
    WITH locked AS (
        SELECT {tokens_used}, {reserved_tokens} FROM {period}
        WHERE {period_tenant} = %(tenant)s AND {period_start} = %(period_start)s
        FOR UPDATE
    ), granted AS (
        SELECT LEAST(%(want)s, %(included)s - {tokens_used} - {reserved_tokens}) AS tokens FROM locked
        WHERE %(included)s - {tokens_used} - {reserved_tokens} >= %(least)s
    ), held AS (
        UPDATE {period} SET {reserved_tokens} = {reserved_tokens} + (SELECT tokens FROM granted)
        WHERE {period_tenant} = %(tenant)s AND {period_start} = %(period_start)s AND EXISTS (SELECT 1 FROM granted)
        RETURNING 1
    )
    INSERT INTO {reservation}
        ({r_tenant}, {r_period_start}, {r_tokens}, {r_feature}, {r_model}, {r_user}, {r_api_key},
         {r_spent_input_tokens}, {r_spent_output_tokens}, {r_created}, {r_expires_at})
    SELECT %(tenant)s, %(period_start)s, tokens, %(feature)s, %(model)s, %(user)s, %(api_key)s,
           0, 0, %(now)s, %(expires)s
    FROM granted WHERE EXISTS (SELECT 1 FROM held)
    RETURNING {r_id}, {r_tokens}
"""

_PERIOD_ENSURE_SQL = """
    INSERT INTO {period} ({period_tenant}, {period_start}, {tokens_used}, {cost_micros}, {reserved_tokens})
    VALUES (%s, %s, 0, 0, 0) ON CONFLICT ({period_tenant}, {period_start}) DO NOTHING
"""


@functools.cache
def _names() -> dict[str, str]:
    """The tables and columns of the statements here, from the models' ``_meta``."""
    reservation_fields = [
        *("id", "tenant", "period_start", "tokens", "feature", "model", "user", "api_key"),
        *("spent_input_tokens", "spent_output_tokens", "created", "expires_at"),
    ]
    return {
        "period": table(TenantUsagePeriod),
        "reservation": table(AllowanceReservation),
        "period_tenant": column(TenantUsagePeriod, "tenant"),
        **{
            name: column(TenantUsagePeriod, name)
            for name in ("period_start", "tokens_used", "cost_micros", "reserved_tokens")
        },
        **{f"r_{name}": column(AllowanceReservation, name) for name in reservation_fields},
    }


def allowance_reserve(
    *,
    tenant: Tenant,
    allowance: Allowance,
    feature: str,
    model: str,
    prompt_tokens: int,
    max_tokens: int,
    least_output: int = 1,
    user_id: int | None,
    api_key_id: int | None,
) -> Reservation:
    """Reserve ``prompt_tokens + max_tokens`` for one call, or what is left of a hard allowance if
    that is less, or refuse with 402 ``quota_exceeded`` when what is left cannot even hold the
    prompt and one token of answer. ``allowance`` is what ``quota_check`` just read; with no hard
    allowance nothing is held, but the row still records the call in flight. ``tenant`` is the
    caller's (as for ``quota_check``)."""
    tenant_id = tenant.pk
    remaining, included = allowance.remaining, allowance.included
    now = timezone.now()
    start = period_start(now)
    expires = now + dt.timedelta(seconds=settings.ALLOWANCE_RESERVATION_TTL_SECONDS)
    if remaining is None:
        row = _reservation_inserted().create(
            tenant_id=tenant_id,
            period_start=start,
            tokens=0,
            feature=feature,
            model=model,
            user_id=user_id,
            api_key_id=api_key_id,
            expires_at=expires,
        )
        return Reservation(id=row.pk, tokens=None)
    params: dict[str, Any] = {
        "tenant": tenant_id,
        "period_start": start,
        "want": prompt_tokens + max_tokens,
        "included": included,
        "least": prompt_tokens + least_output,
        "feature": feature,
        "model": model,
        "user": user_id,
        "api_key": api_key_id,
        "now": now,
        "expires": expires,
    }
    names = _names()
    with connection.cursor() as cursor:
        cursor.execute(_RESERVE_SQL.format(**names), params)
        row = cursor.fetchone()
        if row is None:
            # Refused, or the period's first call (no row to lock yet): make sure the row exists,
            # whoever creates it, and ask once more.
            cursor.execute(_PERIOD_ENSURE_SQL.format(**names), [tenant_id, start])
            cursor.execute(_RESERVE_SQL.format(**names), params)
            row = cursor.fetchone()
    if row is None:
        raise _not_enough(remaining=remaining, prompt_tokens=prompt_tokens, included=included)
    return Reservation(id=int(row[0]), tokens=int(row[1]))


@functools.cache
def _reservation_inserted() -> Inserted[AllowanceReservation]:
    """The row of a call in flight on a plan without a hard allowance, before every turn: built once."""
    return Inserted(AllowanceReservation)


def _not_enough(*, remaining: int, prompt_tokens: int, included: int) -> ApplicationError:
    if remaining <= 0:
        return quota_exceeded_error(used=included - remaining, included=included)
    return ApplicationError(
        f"This organisation has about {max(remaining, 0):,} tokens left this period, some of them held by answers "
        f"in progress: not enough for this request (about {prompt_tokens:,}). Upgrade the plan to continue.",
        code="quota_exceeded",
        status=402,
    )


_RELEASE_SQL = """
    WITH released AS (
        DELETE FROM {reservation} WHERE {r_id} = %s
        RETURNING {r_tenant} AS tenant_id, {r_period_start} AS period_start, {r_tokens} AS tokens
    )
    UPDATE {period} AS period SET {reserved_tokens} = GREATEST(period.{reserved_tokens} - released.tokens, 0)
    FROM released
    WHERE period.{period_tenant} = released.tenant_id AND period.{period_start} = released.period_start
"""


def allowance_release(*, reservation_id: int) -> None:
    """Give a reservation back unspent (its call never started). Releasing twice does nothing."""
    with connection.cursor() as cursor:
        cursor.execute(_RELEASE_SQL.format(**_names()), [reservation_id])


def allowance_settle(*, reservation_id: int) -> None:
    """Close a reservation whose call is being recorded: the caller's transaction adds the usage
    to the period (usage_record) and this takes the hold off. Settling twice does nothing."""
    allowance_release(reservation_id=reservation_id)


def allowance_checkpoint(*, reservation_id: int, input_tokens: int, output_tokens: int) -> None:
    """Note what a call in flight has spent so far, and keep its reservation alive: if its process
    dies, the expiry bills this much."""
    AllowanceReservation.objects.filter(id=reservation_id).update(
        spent_input_tokens=input_tokens,
        spent_output_tokens=output_tokens,
        expires_at=timezone.now() + dt.timedelta(seconds=settings.ALLOWANCE_RESERVATION_TTL_SECONDS),
    )


def reservations_expire(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Settle the reservations of calls whose process died: bill what they checkpointed (a ledger
    row keyed by the reservation, so a second run bills nothing twice) and release the rest."""
    now = now or timezone.now()
    expired = list(AllowanceReservation.objects.filter(expires_at__lt=now).order_by("id")[:limit])
    for reservation in expired:
        with transaction.atomic():
            spent_in, spent_out = reservation.spent_input_tokens, reservation.spent_output_tokens
            if spent_in + spent_out:
                _bill_expired(reservation, input_tokens=spent_in, output_tokens=spent_out)
            allowance_release(reservation_id=reservation.pk)
    return len(expired)


@dataclass(frozen=True)
class _Spent:
    """The usage a dead call checkpointed, in the shape usage_record reads."""

    input_tokens: int
    output_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }


def _bill_expired(reservation: AllowanceReservation, *, input_tokens: int, output_tokens: int) -> None:
    usage_record(
        tenant_id=reservation.tenant_id,
        user_id=reservation.user_id,
        api_key_id=reservation.api_key_id,
        feature=reservation.feature,
        model=reservation.model,
        usage=_Spent(input_tokens=input_tokens, output_tokens=output_tokens),
        request_key=f"reservation:{reservation.pk}",
    )
