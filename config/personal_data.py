"""A person's own data across every workspace: downloading it (a zip of JSON, built by a job and
mailed as a link) and deleting the account (the API, and the operators' admin, come here).

Users live in ``public`` and their rows in each tenant's schema. Deleting a user therefore cleans
every tenant schema first (ai.services.people: conversations go, documents stay with the
organisation, attributed to "a former member") and then deletes the user in ``public``, where the
ledger keeps its rows with the user cleared. Every schema is asked, not only the workspaces the
person belongs to now (a member who left may still have conversations where they were), a few
hundred schemas per statement; only those holding something of theirs are visited.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from typing import IO, Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context

from ai.services.people import person_data_erase, person_data_export, schemas_with_person
from billing.models import UsageEvent
from config.downloads import download_file_write, download_token
from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.jobs import job_defer, public_task
from core.platform.mail import MAIL_RETRY, mail_send
from tenants.audit.services import Action, Operator, audit_record
from tenants.models import Membership, Tenant, tenant_url
from tenants.services.status import access_revoke_on_commit

ACCOUNT_EXPORT_JOB = "config.account_export"
FORMER_MEMBER = "a former member"


def tenants_with_schemas() -> list[Tenant]:
    """Every tenant whose schema exists (a closed workspace keeps its schema for a while)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace")
        schemas = {row[0] for row in cursor.fetchall()}
    tenants = Tenant.objects.exclude(schema_name=get_public_schema_name()).order_by("id")
    return [tenant for tenant in tenants if tenant.schema_name in schemas]


# --- Export -----------------------------------------------------------------------------------


def account_export_request(*, user: User, tenant: Tenant) -> None:
    """Queue the export; the link goes to the person's own address, on the host they asked from."""
    with transaction.atomic():
        audit_record(tenant=tenant, action=Action.ACCOUNT_EXPORTED, actor=user, target=f"user {user.pk}")
        job_defer(ACCOUNT_EXPORT_JOB, user_id=user.pk, tenant_id=tenant.pk)


def _json(data: Any) -> str:
    return json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)


def _usage(*, tenant: Tenant, user_id: int) -> list[dict[str, Any]]:
    rows = UsageEvent.objects.for_tenant(tenant).filter(user_id=user_id).order_by("created", "id")
    fields = ["feature", "model", "input_tokens", "output_tokens", "cache_creation_input_tokens"]
    fields += ["cache_read_input_tokens", "total_tokens", "cost_micros", "created"]
    return list(rows.values(*fields))


def account_export_sections(*, user: User) -> Iterator[tuple[str, Any]]:
    """(file name, content) of the person's export: their profile and memberships, and per
    workspace where they have data, their conversations, documents and usage."""
    yield (
        "profile.json",
        {
            "id": user.pk,
            "email": user.email,
            "full_name": user.full_name,
            "date_joined": user.date_joined,
            "last_login": user.last_login,
        },
    )
    memberships = Membership.objects.filter(user=user).select_related("tenant").order_by("created")
    member_of = {m.tenant_id for m in memberships}
    yield (
        "memberships.json",
        [
            {"workspace": m.tenant.subdomain, "name": m.tenant.name, "role": m.role, "since": m.created}
            for m in memberships
        ],
    )
    tenants = tenants_with_schemas()
    with_data = schemas_with_person(user_id=user.pk, schema_names=[t.schema_name for t in tenants])
    with_usage = set(UsageEvent.objects.filter(user=user).values_list("tenant_id", flat=True).distinct())
    for tenant in tenants:
        if tenant.pk not in member_of | with_usage and tenant.schema_name not in with_data:
            continue
        with schema_context(tenant.schema_name):
            data = person_data_export(user_id=user.pk)
        usage = _usage(tenant=tenant, user_id=user.pk)
        folder = f"workspaces/{tenant.subdomain}"
        yield f"{folder}/conversations.json", data["conversations"]
        yield f"{folder}/documents.json", data["documents"]
        yield f"{folder}/usage.json", usage


def account_export_write(*, user: User, out: IO[bytes]) -> None:
    """Write the person's export, a zip of JSON files, to ``out``."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in account_export_sections(user=user):
            archive.writestr(name, _json(content))


def account_export_send(*, user_id: int, tenant_id: int) -> None:
    """Job body: build the person's export and mail them a link to it (on the host they asked from)."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if user is None or tenant is None:
        return
    with download_file_write() as (out, name):
        account_export_write(user=user, out=out)
    filename = f"strata-my-data-{timezone.now():%Y%m%d}.zip"
    token = download_token(name=name, user_id=user.pk, kind="account", tenant_id=tenant.pk, filename=filename)
    mail_send(
        to=user.email,
        template="config/email/account_export",
        context={
            "site_name": tenant.name,
            "link": f"{tenant_url(tenant.subdomain)}downloads/{token}/",
            "days": settings.EXPORT_LINK_MAX_AGE // 86400,
        },
    )


# The mail server may be down: the whole job is retried (building the file again costs little next
# to leaving someone without their data).
@public_task(name=ACCOUNT_EXPORT_JOB, queue="exports", retry=MAIL_RETRY)
def account_export_job(*, user_id: int, tenant_id: int) -> None:
    account_export_send(user_id=user_id, tenant_id=tenant_id)


# --- Deletion ---------------------------------------------------------------------------------


def _last_owner_of(user: User) -> list[Tenant]:
    """Open workspaces where the person is the only owner (their owner rows locked until commit).
    A closed workspace does not count: closing it was the other way out."""
    owned = list(
        Membership.objects.filter(user=user, role=Membership.Role.OWNER)
        .exclude(tenant__status="closed")
        .values_list("tenant_id", flat=True)
    )
    if not owned:
        return []
    owners = (
        Membership.objects.select_for_update()
        .filter(tenant_id__in=owned, role=Membership.Role.OWNER)
        .order_by("id")
        .values_list("tenant_id", flat=True)
    )
    counts: dict[int, int] = {}
    for tenant_id in owners:
        counts[tenant_id] = counts.get(tenant_id, 0) + 1
    alone = [tenant_id for tenant_id, count in counts.items() if count == 1]
    return list(Tenant.objects.filter(pk__in=alone).order_by("name"))


@transaction.atomic
def account_delete_check(*, user: User) -> None:
    """Raise (409 ``last_owner``) if deleting the account would leave a workspace without an owner."""
    alone = _last_owner_of(user)
    if alone:
        names = ", ".join(tenant.name for tenant in alone)
        raise ApplicationError(
            f"You are the last owner of {names}: hand over ownership or close the workspace first.",
            code="last_owner",
            status=409,
            extra={"workspaces": [tenant.subdomain for tenant in alone]},
        )


# A person who signs in only through their organisation's identity provider has no password to
# give: a sign-in this recent stands for it.
FRESH_SIGN_IN_SECONDS = 600


def sign_in_is_fresh(*, user: User, tenant: Tenant) -> bool:
    """Whether the account signed in within FRESH_SIGN_IN_SECONDS (the caller's session did) and
    belongs to no workspace but ``tenant``: that tenant's identity provider vouches for its own
    members, not for the person's other organisations (who set a password by reset e-mail first)."""
    recent = user.last_login is not None and (timezone.now() - user.last_login).total_seconds() < FRESH_SIGN_IN_SECONDS
    return recent and not Membership.objects.filter(user=user).exclude(tenant=tenant).exists()


def account_delete(
    *, user: User, password: str | None = None, operator: User | None = None, fresh_sign_in: bool = False
) -> None:
    """Delete the account: by the person (their ``password``; an account without one, through
    single sign-on, with a ``fresh_sign_in``) or by an ``operator``.

    In every tenant schema their conversations and messages go and the rest they made is kept
    without their name; in ``public`` the account, its memberships and tokens go, and the ledger
    keeps its rows and totals with the user cleared. Their sessions, sockets and answers on every
    workspace end when this commits.
    """
    # Checked before the transaction: the hash takes its slot with no pooled connection held.
    if operator is None and not user.has_usable_password():
        if not fresh_sign_in:
            raise ApplicationError(
                "Sign in again with single sign-on, then delete the account within ten minutes. If you "
                "belong to other organisations too, set a password first (password reset) and give it.",
                code="reauthentication_required",
                status=403,
            )
    elif operator is None and (password is None or not user.check_password(password)):
        raise ApplicationError(
            "The password is not right.",
            code="wrong_password",
            status=400,
            extra={"fields": {"password": ["The password is not right."]}},
        )
    with transaction.atomic():
        _account_erase(user=user, operator=operator)


def _account_erase(*, user: User, operator: User | None) -> None:
    account_delete_check(user=user)
    member_of = list(Membership.objects.filter(user=user).select_related("tenant"))
    schema_names = [tenant.schema_name for tenant in tenants_with_schemas()]
    for schema_name in sorted(schemas_with_person(user_id=user.pk, schema_names=schema_names)):
        with schema_context(schema_name):
            person_data_erase(user_id=user.pk)
    actor: User | Operator = Operator(user=operator) if operator is not None else user
    for membership in member_of:
        audit_record(
            tenant=membership.tenant,
            action=Action.ACCOUNT_DELETED,
            actor=actor,
            actor_label="" if operator is not None else FORMER_MEMBER,
            target=f"user {user.pk}",
        )
        access_revoke_on_commit(schema_name=membership.tenant.schema_name, user_id=user.pk)
    user.delete()
