"""One workspace as a file and back: ``tenant_export`` writes a versioned, checksummed archive of a
tenant (its schema's tables, original uploads, and its rows in ``public``), ``tenant_import``
restores one into a new tenant provisioned the normal way.

The archive is a zip:

- ``manifest.json``: format and version, the tenant migrations its schema had, each table's
  columns and row count, and the SHA-256 of every other file in the archive;
- ``schema/<table>.copy``: every table of the tenant apps (ai), in PostgreSQL's COPY text format,
  ordered by primary key; the bytes of uploads are left out of their table and kept as files;
- ``uploads/<document id>``: the original uploaded files (DocumentUpload), as they came, with
  ``uploads.json`` describing them;
- ``public.json``: the tenant's rows in ``public``: its members (with their e-mail and name),
  subscription, usage ledger and period totals, invitations and API keys. Secrets stay behind:
  no key hashes, invitation tokens or Checkout sessions.

Why COPY and not Django's serialisers: COPY writes every column type exactly as PostgreSQL reads
it back (a pgvector embedding's text form round-trips every float4 bit for bit; JSON, bytea and
timestamps too), it streams (a schema with millions of chunks never sits in memory), and it needs
no knowledge of the models beyond their columns, so a table added later is exported without code
here. The Django serialisers build every row as a Python object and go through each field's
``value_to_string``, which pgvector's field does not round-trip.

What changes on import, on purpose: ids inside the schema are kept (the new schema is empty, and
keeping them keeps every reference between its tables); the ids of rows in ``public`` are new
(tenant, memberships, keys, ledger rows, invitations), and the schema's references to people and
keys are rewritten to them. People are matched by e-mail; someone with no account here gets one
without a password (they set it through "forgot password"). API keys come back revoked, with new
prefixes and no secret (their owners make new ones); invitations come back without their link
(a resend makes one). The subscription keeps its plan but not its Stripe ids, and the workspace
starts active: a copy never bills, or is billed by, the original's Stripe customer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.apps import apps
from django.conf import settings
from django.core.management.color import no_style
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context
from psycopg import sql

from ai.models import DocumentUpload
from billing.models import Plan, Subscription, TenantUsagePeriod, UsageEvent
from config.downloads import download_file_write, download_token
from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.jobs import job_defer, public_task
from core.platform.mail import MAIL_RETRY, mail_send
from tenants.audit.services import Action, Operator, audit_record
from tenants.models import ApiKey, Invitation, Membership, Tenant, tenant_url
from tenants.services.provisioning import provisioning_lock, tenant_provision, tenant_template_ensure_once
from tenants.services.schema_migrations import schemas_applied, tenant_migration_nodes
from tenants.validators import schema_name_for, validate_subdomain

FORMAT = "strata-tenant-archive"
FORMAT_VERSION = 1
TENANT_EXPORT_JOB = "config.tenant_export"
_CHUNK = 1 << 20


class ArchiveError(Exception):
    """The archive cannot be imported: damaged, of another format or version, or from a schema
    with other migrations than this code's."""


# --- What is in a schema --------------------------------------------------------------------


def archive_models() -> list[type[models.Model]]:
    """The tenant apps' tables exported by COPY (uploads are files of their own)."""
    found: list[type[models.Model]] = []
    for label in settings.TENANT_APPS:
        if label in settings.SHARED_APPS:
            continue
        app_config = apps.get_app_config(label.rsplit(".", 1)[-1])
        found += [m for m in app_config.get_models(include_auto_created=True) if m is not DocumentUpload]
    return sorted(found, key=lambda model: model._meta.db_table)


def _columns(model: type[models.Model]) -> list[str]:
    """The stored columns; generated ones (a search vector) are left out: PostgreSQL computes them
    again as the rows are restored, and COPY refuses them anyway."""
    return [str(field.column) for field in model._meta.concrete_fields if not getattr(field, "generated", False)]


def reference_columns(model: type[models.Model]) -> dict[str, str]:
    """The columns of a schema table that point into ``public``: ``{"created_by_id": "user"}``
    (or ``"api_key"``). A reference to any other public table has no rule yet and is refused."""
    inside = set(archive_models()) | {DocumentUpload}
    references: dict[str, str] = {}
    for field in model._meta.concrete_fields:
        if not isinstance(field, models.ForeignKey) or field.related_model in inside:
            continue
        if field.related_model is User:
            references[field.column] = "user"
        elif field.related_model is ApiKey:
            references[field.column] = "api_key"
        else:
            raise ArchiveError(f"{model.__name__}.{field.name} points at {field.related_model}: no export rule for it.")
    return references


def _qualified(schema: str, model: type[models.Model]) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(model._meta.db_table))


def _raw_cursor() -> Any:
    connection.ensure_connection()
    return connection.connection.cursor()


# --- Export -----------------------------------------------------------------------------------


@contextmanager
def _snapshot() -> Iterator[None]:
    """One consistent view of the schema and of public for the whole export."""
    if connection.in_atomic_block:  # a caller's transaction (tests): its view is the one we get
        with transaction.atomic():
            yield
        return
    with transaction.atomic():
        with _raw_cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


class _ExactJSON(DjangoJSONEncoder):
    """Django's encoder, but times keep their microseconds (it cuts them to milliseconds)."""

    def default(self, o: Any) -> Any:
        if isinstance(o, dt.datetime | dt.time):
            return o.isoformat()
        return super().default(o)


class _Writer:
    """Files into the zip, each hashed as it is written."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.files: dict[str, str] = {}

    @contextmanager
    def open(self, name: str) -> Iterator[Any]:
        digest = hashlib.sha256()
        with self.archive.open(name, "w", force_zip64=True) as entry:

            class _Hashing:
                @staticmethod
                def write(data: bytes) -> None:
                    digest.update(data)
                    entry.write(data)

            yield _Hashing
        self.files[name] = digest.hexdigest()

    def json(self, name: str, data: Any) -> None:
        with self.open(name) as out:
            out.write(json.dumps(data, cls=_ExactJSON, indent=1, sort_keys=True).encode())


def _table_export(writer: _Writer, schema: str, model: type[models.Model]) -> int:
    columns = _columns(model)
    query = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        _qualified(schema, model),
        sql.Identifier(str(model._meta.pk.column)),
    )
    rows = 0
    with writer.open(f"schema/{model._meta.db_table}.copy") as out, _raw_cursor() as cursor:
        with cursor.copy(query) as copy:
            for block in copy:
                data = bytes(block)
                rows += data.count(b"\n")  # COPY text escapes newlines inside values: one per row
                out.write(data)
    return rows


def _uploads_export(writer: _Writer) -> None:
    """Each original file as it came, and its row's other columns in uploads.json (one row at a
    time: a file may be megabytes)."""
    described = []
    for document_id in DocumentUpload.objects.order_by("pk").values_list("pk", flat=True):
        upload = DocumentUpload.objects.get(pk=document_id)
        with writer.open(f"uploads/{document_id}") as out:
            out.write(bytes(upload.data))
        described.append({**_row(upload, skip=("data",), keep_id=True), "file": f"uploads/{document_id}"})
    writer.json("uploads.json", described)


def _row(obj: models.Model, *, skip: tuple[str, ...] = (), keep_id: bool = False) -> dict[str, Any]:
    """A row's own stored columns (FKs as ids), without its tenant, ``skip`` and (unless
    ``keep_id``) its id; generated columns are computed again on import."""
    left_out = {"tenant", *skip} | (set() if keep_id else {"id"})
    return {
        field.attname: field.value_from_object(obj)
        for field in obj._meta.concrete_fields
        if field.name not in left_out and not getattr(field, "generated", False)
    }


def _schema_user_ids(schema: str) -> tuple[set[int], set[int]]:
    """Every user and API key id the schema's tables point at."""
    users: set[int] = set()
    keys: set[int] = set()
    with _raw_cursor() as cursor:
        for model in archive_models():
            for column, kind in reference_columns(model).items():
                query = sql.SQL("SELECT DISTINCT {c} FROM {t} WHERE {c} IS NOT NULL").format(
                    c=sql.Identifier(column), t=_qualified(schema, model)
                )
                cursor.execute(query)
                (users if kind == "user" else keys).update(row[0] for row in cursor.fetchall())
    return users, keys


def _public_export(tenant: Tenant) -> dict[str, Any]:
    memberships = list(Membership.objects.for_tenant(tenant).order_by("id"))
    api_keys = list(ApiKey.objects.for_tenant(tenant).order_by("id"))
    invitations = list(Invitation.objects.for_tenant(tenant).order_by("id"))
    usage = list(UsageEvent.objects.for_tenant(tenant).order_by("id"))
    schema_users, _ = _schema_user_ids(tenant.schema_name)
    key_users = {key.user_id for key in api_keys}
    referenced: set[int | None] = {*schema_users, *(m.user_id for m in memberships)}
    referenced |= {key.created_by_id for key in api_keys} | {e.user_id for e in usage}
    referenced |= {i.invited_by_id for i in invitations} | {i.accepted_by_id for i in invitations}
    people = User.objects.filter(pk__in={i for i in referenced if i is not None} - key_users).order_by("id")
    subscription = Subscription.objects.for_tenant(tenant).select_related("plan").first()
    return {
        "tenant": {"name": tenant.name, "subdomain": tenant.subdomain, "status": tenant.status},
        "people": [
            {
                "ref": u.pk,
                "email": u.email,
                "full_name": u.full_name,
                "is_active": u.is_active,
                "date_joined": u.date_joined,
            }
            for u in people
        ],
        "memberships": [_row(m) for m in memberships],
        "subscription": None
        if subscription is None
        else {
            "plan": subscription.plan.slug,
            **_row(subscription, skip=("plan", "checkout_session_id", "last_event_at", "updated")),
        },
        "api_keys": [{"ref": k.pk, **_row(k, skip=("hashed_key",))} for k in api_keys],
        "invitations": [_row(i, skip=("token_hash",)) for i in invitations],
        "usage_events": [_row(e) for e in usage],
        "usage_periods": [_row(p) for p in TenantUsagePeriod.objects.for_tenant(tenant).order_by("period_start")],
    }


def tenant_export(*, tenant: Tenant, out: IO[bytes]) -> dict[str, Any]:
    """Write ``tenant``'s archive to ``out``; returns the manifest."""
    with _snapshot(), zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        writer = _Writer(archive)
        tables = {}
        with schema_context(tenant.schema_name):
            for model in archive_models():
                rows = _table_export(writer, tenant.schema_name, model)
                tables[model._meta.db_table] = {"columns": _columns(model), "rows": rows}
            _uploads_export(writer)
        with schema_context(get_public_schema_name()):
            writer.json("public.json", _public_export(tenant))
            applied = schemas_applied([tenant.schema_name])[tenant.schema_name] or set()
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created": timezone.now(),
            "tenant": {"name": tenant.name, "subdomain": tenant.subdomain, "schema_name": tenant.schema_name},
            "migrations": sorted(f"{app}.{name}" for app, name in applied),
            "tables": tables,
            "files": writer.files,
        }
        archive.writestr("manifest.json", json.dumps(manifest, cls=_ExactJSON, indent=1, sort_keys=True))
    return manifest


# --- Import -----------------------------------------------------------------------------------


def archive_verify(archive: zipfile.ZipFile) -> dict[str, Any]:
    """The manifest of an archive whose format, version and every file's checksum are right;
    otherwise ArchiveError saying what is wrong."""
    try:
        manifest = json.loads(archive.read("manifest.json"))
    except (KeyError, ValueError) as exc:
        raise ArchiveError("Not a Strata tenant archive: its manifest is missing or unreadable.") from exc
    if manifest.get("format") != FORMAT:
        raise ArchiveError("Not a Strata tenant archive.")
    if manifest.get("version") != FORMAT_VERSION:
        raise ArchiveError(
            f"Archive format version {manifest.get('version')} is not supported (this Strata reads {FORMAT_VERSION})."
        )
    listed: dict[str, str] = manifest.get("files") or {}
    present = set(archive.namelist()) - {"manifest.json"}
    if present != set(listed):
        missing, extra = sorted(set(listed) - present), sorted(present - set(listed))
        raise ArchiveError(f"The archive's files do not match its manifest (missing {missing}, unlisted {extra}).")
    for name, expected in listed.items():
        digest = hashlib.sha256()
        try:
            with archive.open(name) as entry:
                while block := entry.read(_CHUNK):
                    digest.update(block)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ArchiveError(f"{name} cannot be read: the archive is damaged ({exc}).") from exc
        if digest.hexdigest() != expected:
            raise ArchiveError(f"Checksum mismatch for {name}: the archive is damaged or was altered.")
    return dict(manifest)


def _migrations_check(manifest: dict[str, Any]) -> None:
    ours = sorted(f"{app}.{name}" for app, name in tenant_migration_nodes())
    theirs = sorted(manifest.get("migrations") or [])
    if theirs != ours:
        only_theirs, only_ours = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
        raise ArchiveError(
            "The archive's schema has other migrations than this Strata's "
            f"(only in the archive: {only_theirs}; only here: {only_ours}). "
            "Import it with the Strata version that made it, or migrate that tenant and export it again."
        )
    for model in archive_models():
        table = manifest["tables"].get(model._meta.db_table)
        if table is None or table["columns"] != _columns(model):
            raise ArchiveError(f"The archive's {model._meta.db_table} does not have this Strata's columns.")


def _field_values(model: type[models.Model], row: dict[str, Any]) -> dict[str, Any]:
    fields = {field.attname: field for field in model._meta.concrete_fields}
    return {name: fields[name].to_python(value) for name, value in row.items() if name in fields}


def _create_as_exported(model: type[models.Model], rows: list[dict[str, Any]]) -> list[Any]:
    """Insert rows with their exported values, ``auto_now_add`` ones included (which Django would
    otherwise replace with now)."""
    objs = [model(**_field_values(model, row)) for row in rows]
    given = set(rows[0]) if rows else set()
    stamped = [
        field.attname
        for field in model._meta.concrete_fields
        if (getattr(field, "auto_now_add", False) or getattr(field, "auto_now", False)) and field.attname in given
    ]
    values = [{name: getattr(obj, name) for name in stamped} for obj in objs]
    model._default_manager.bulk_create(objs)
    if stamped and objs:
        for obj, kept in zip(objs, values, strict=True):
            for name, value in kept.items():
                setattr(obj, name, value)
        model._default_manager.bulk_update(objs, stamped)
    return objs


def _people_restore(people: list[dict[str, Any]]) -> dict[int, int]:
    """Old user id -> this database's user with the same e-mail (created, with no password, if none)."""
    mapping = {}
    for person in people:
        user = User.objects.filter(email__iexact=person["email"]).first()
        if user is None:
            user = User(email=person["email"].lower(), full_name=person["full_name"], is_active=person["is_active"])
            user.set_unusable_password()
            user.save()
        mapping[person["ref"]] = user.pk
    return mapping


def _api_keys_restore(
    tenant: Tenant, keys: list[dict[str, Any]], users: dict[int, int]
) -> tuple[dict[int, int], dict[int, int]]:
    """Each key again, revoked, with a new prefix and no secret, acting through a new user row."""
    key_map: dict[int, int] = {}
    key_users: dict[int, int] = {}
    for key in keys:
        identity = User(
            email=f"key-{secrets.token_hex(16)}@api-keys.invalid", full_name=f"API key: {key['name']}"[:150]
        )
        identity.set_unusable_password()
        identity.is_active = False
        identity.save()
        row = {
            **key,
            "tenant_id": tenant.pk,
            "user_id": identity.pk,
            "created_by_id": users.get(key["created_by_id"]),
            "prefix": secrets.token_hex(4),
            "hashed_key": "",
            "revoked": key["revoked"] or timezone.now(),
        }
        (api_key,) = _create_as_exported(ApiKey, [row])
        key_map[key["ref"]] = api_key.pk
        key_users[key["user_id"]] = identity.pk
    return key_map, key_users


def _with(rows: list[dict[str, Any]], tenant: Tenant, **maps: dict[int, int]) -> list[dict[str, Any]]:
    """Rows for ``tenant``, their reference columns (``maps``' keys) rewritten to the new ids."""
    out = []
    for row in rows:
        row = {**row, "tenant_id": tenant.pk}
        for column, mapping in maps.items():
            if row.get(column) is not None:
                row[column] = mapping.get(row[column])
        out.append(row)
    return out


def _public_restore(tenant: Tenant, public: dict[str, Any]) -> tuple[dict[int, int], dict[int, int]]:
    users = _people_restore(public["people"])
    key_map, key_users = _api_keys_restore(tenant, public["api_keys"], users)
    _create_as_exported(Membership, _with(public["memberships"], tenant, user_id=users))
    _create_as_exported(Invitation, _with(public["invitations"], tenant, invited_by_id=users, accepted_by_id=users))
    _create_as_exported(
        UsageEvent, _with(public["usage_events"], tenant, user_id=users | key_users, api_key_id=key_map)
    )
    _create_as_exported(TenantUsagePeriod, _with(public["usage_periods"], tenant))
    subscription = public.get("subscription")
    if subscription is not None:
        plan = Plan.objects.filter(slug=subscription.pop("plan")).first()
        if plan is None:
            raise ArchiveError("The archive's plan does not exist here: create it first.")
        # Stripe's side stays with the original: no ids, no status, nothing past due to enforce here.
        stripe_state: dict[str, str | None] = {"stripe_customer_id": "", "stripe_subscription_id": "", "status": ""}
        stripe_state |= {"current_period_end": None, "past_due_since": None}
        row = {**subscription, "plan_id": plan.pk, **stripe_state}
        _create_as_exported(Subscription, _with([row], tenant))
    return users | key_users, key_map


def _table_import(archive: zipfile.ZipFile, schema: str, model: type[models.Model]) -> None:
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(
        _qualified(schema, model), sql.SQL(", ").join(map(sql.Identifier, _columns(model)))
    )
    with archive.open(f"schema/{model._meta.db_table}.copy") as entry, _raw_cursor() as cursor:
        with cursor.copy(query) as copy:
            while block := entry.read(_CHUNK):
                copy.write(block)


def _references_rewrite(schema: str, model: type[models.Model], column: str, mapping: dict[int, int]) -> None:
    """Point ``column`` at the new ids; a reference to someone the archive does not know (an account
    deleted before the export) becomes NULL, or its row goes where the column cannot be NULL."""
    table = _qualified(schema, model)
    old, new = [list(map(int, mapping)), list(mapping.values())]
    params = {"old": old, "new": new}
    with _raw_cursor() as cursor:
        if not model._meta.get_field(_attname_field(model, column)).null:
            cursor.execute(
                sql.SQL("DELETE FROM {t} WHERE NOT ({c} = ANY(%(old)s::bigint[]))").format(
                    t=table, c=sql.Identifier(column)
                ),
                params,
            )
        cursor.execute(
            sql.SQL(
                "UPDATE {t} SET {c} = (SELECT m.new FROM unnest(%(old)s::bigint[], %(new)s::bigint[]) AS m(old, new) "
                "WHERE m.old = {t}.{c}) WHERE {c} IS NOT NULL"
            ).format(t=table, c=sql.Identifier(column)),
            params,
        )


def _attname_field(model: type[models.Model], column: str) -> str:
    return next(field.name for field in model._meta.concrete_fields if field.column == column)


def _schema_restore(
    archive: zipfile.ZipFile, schema: str, *, user_map: dict[int, int], key_map: dict[int, int]
) -> None:
    restored = archive_models()
    with _raw_cursor() as cursor:
        tables = [_qualified(schema, model) for model in [*restored, DocumentUpload]]  # type: ignore[arg-type]
        cursor.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(tables)))  # the clone's seeded rows
    for model in restored:
        _table_import(archive, schema, model)
    uploads = json.loads(archive.read("uploads.json"))
    with schema_context(schema):
        for upload in uploads:  # one at a time, as exported: a file may be megabytes
            _create_as_exported(DocumentUpload, [{**upload, "data": archive.read(upload["file"])}])
    for model in restored:
        for column, kind in reference_columns(model).items():
            _references_rewrite(schema, model, column, user_map if kind == "user" else key_map)
    with schema_context(schema), connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), restored):
            cursor.execute(statement)
    connection.check_constraints()


def tenant_import(*, path: Path, subdomain: str, name: str | None = None) -> Tenant:
    """Restore the archive at ``path`` into a new tenant ``subdomain``, all or nothing."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"Not a readable zip file: {exc}") from exc
    with archive:
        manifest = archive_verify(archive)
        _migrations_check(manifest)
        public = json.loads(archive.read("public.json"))
        subdomain = subdomain.strip().lower()
        try:
            validate_subdomain(subdomain)
        except Exception as exc:  # noqa: BLE001 - Django's ValidationError, said plainly
            raise ArchiveError(f"Subdomain '{subdomain}': {getattr(exc, 'messages', [exc])[0]}") from exc
        tenant_template_ensure_once()
        with schema_context(get_public_schema_name()), transaction.atomic():
            provisioning_lock()
            if Tenant.objects.filter(subdomain=subdomain).exists():
                raise ArchiveError(f"The subdomain '{subdomain}' is taken.")
            tenant = tenant_provision(
                name=name or public["tenant"]["name"],
                subdomain=subdomain,
                schema_name=schema_name_for(subdomain),
                status=Tenant.Status.ACTIVE,
            )
            user_map, key_map = _public_restore(tenant, public)
            _schema_restore(archive, tenant.schema_name, user_map=user_map, key_map=key_map)
            audit_record(
                tenant=tenant,
                action=Action.TENANT_CHANGED,
                actor=Operator(),
                target=f"workspace {subdomain}",
                changes={"imported_from": manifest["tenant"]["subdomain"], "archive_created": manifest["created"]},
            )
    return tenant


# --- Requested by an owner from the billing page ------------------------------------------


def tenant_export_request(*, tenant: Tenant, user: User) -> None:
    """Queue the workspace's archive for an owner; the link goes to them."""
    if not Membership.objects.for_tenant(tenant).filter(user=user, role=Membership.Role.OWNER).exists():
        raise ApplicationError("Only owners can export the workspace.", code="owner_required", status=403)
    with transaction.atomic():
        audit_record(tenant=tenant, action=Action.EXPORT_REQUESTED, actor=user, target=f"workspace {tenant.subdomain}")
        job_defer(TENANT_EXPORT_JOB, tenant_id=tenant.pk, user_id=user.pk)


def tenant_export_send(*, tenant_id: int, user_id: int) -> None:
    """Job body: write the archive and mail the owner who asked a link to it."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if tenant is None or user is None:
        return
    if not Membership.objects.for_tenant(tenant).filter(user=user, role=Membership.Role.OWNER).exists():
        return  # no longer an owner since asking
    with download_file_write() as (out, name):
        tenant_export(tenant=tenant, out=out)
    filename = f"strata-{tenant.subdomain}-{timezone.now():%Y%m%d}.zip"
    token = download_token(name=name, user_id=user.pk, kind="tenant", tenant_id=tenant.pk, filename=filename)
    mail_send(
        to=user.email,
        template="config/email/tenant_export",
        context={
            "site_name": tenant.name,
            "link": f"{tenant_url(tenant.subdomain)}downloads/{token}/",
            "days": settings.EXPORT_LINK_MAX_AGE // 86400,
        },
    )


@public_task(name=TENANT_EXPORT_JOB, queue="exports", retry=MAIL_RETRY)
def tenant_export_job(*, tenant_id: int, user_id: int) -> None:
    tenant_export_send(tenant_id=tenant_id, user_id=user_id)
