"""Who may read and change which documents: the one place the collection rules live.

Reading is decided by one SQL statement (``readable_collections_sql``) that every read path runs
inside its own query: the vector search puts it in the kNN statement itself (never a filter after
it), and the ORM reads (lists, pages, the admin, summaries, history) filter on it through
``RawSQL``. The statement asks the public membership and key tables itself, so a role changed or
a grant removed counts from the next query, whichever process holds the asker's connection.

- owners and admins read every collection;
- a person reads the tenant-wide collections and the ``members`` ones naming them;
- an API key given collections (``CollectionMember`` rows of its user) reads those only; a key
  given none reads the tenant-wide ones;
- anyone else (no membership, a revoked key) reads nothing.

Changing: owners and admins change any document; a member or a key changes the documents it
added, in collections it may read. Adding goes to a collection the asker may read.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from ai.models import Collection, CollectionMember, Document
from core.platform.exceptions import ApplicationError
from core.platform.sql_names import column, table
from tenants.models import ApiKey, Membership


@dataclass(frozen=True)
class Reader:
    """Who is asking, on which tenant, and what they narrowed the question to (None: no narrowing;
    narrowing can only take away, never add what the rule does not give)."""

    tenant_id: int
    user_id: int
    collection_ids: tuple[int, ...] | None = None
    document_ids: tuple[int, ...] | None = None

    def narrowed(
        self, *, collection_ids: Sequence[int] | None = None, document_ids: Sequence[int] | None = None
    ) -> Reader:
        return Reader(
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            collection_ids=tuple(collection_ids) if collection_ids is not None else self.collection_ids,
            document_ids=tuple(document_ids) if document_ids is not None else self.document_ids,
        )


def reader_of(*, tenant: Any, user: Any) -> Reader:
    return Reader(tenant_id=int(tenant.pk), user_id=int(user.pk))


@functools.cache
def _readable_sql() -> str:
    membership, key, grant, collection = table(Membership), table(ApiKey), table(CollectionMember), table(Collection)
    m = {name: column(Membership, name) for name in ("tenant", "user", "role")}
    k = {name: column(ApiKey, name) for name in ("tenant", "user", "revoked")}
    g = {name: column(CollectionMember, name) for name in ("collection", "user")}
    c = {name: column(Collection, name) for name in ("id", "visibility")}
    admin_roles = ", ".join(f"'{role}'" for role in (Membership.Role.OWNER, Membership.Role.ADMIN))
    # Unqualified names: the tenant's schema comes first on the search_path, then public.
    return (
        f"SELECT col.{c['id']} FROM {collection} col, (SELECT"
        f" EXISTS (SELECT 1 FROM {membership} m WHERE m.{m['tenant']} = %s AND m.{m['user']} = %s"
        f" AND m.{m['role']} IN ({admin_roles})) AS admin,"
        f" EXISTS (SELECT 1 FROM {membership} m WHERE m.{m['tenant']} = %s AND m.{m['user']} = %s) AS person,"
        f" EXISTS (SELECT 1 FROM {key} k WHERE k.{k['tenant']} = %s AND k.{k['user']} = %s"
        f" AND k.{k['revoked']} IS NULL) AS program,"
        f" EXISTS (SELECT 1 FROM {grant} g WHERE g.{g['user']} = %s) AS granted) who"
        f" WHERE who.admin OR ((who.person OR who.program) AND ("
        f"EXISTS (SELECT 1 FROM {grant} g WHERE g.{g['collection']} = col.{c['id']} AND g.{g['user']} = %s)"
        f" OR (col.{c['visibility']} = '{Collection.Visibility.TENANT}' AND NOT (who.program AND who.granted))))"
    )


def readable_collections_sql(reader: Reader) -> tuple[str, list[Any]]:
    """The ids of the collections ``reader`` may read, as SQL to embed in another statement."""
    t, u = reader.tenant_id, reader.user_id
    return _readable_sql(), [t, u, t, u, t, u, u, u]


def collections_readable(reader: Reader) -> QuerySet[Collection]:
    sql, params = readable_collections_sql(reader)
    return Collection.objects.filter(id__in=RawSQL(sql, params))  # noqa: S611 - our SQL, values as parameters


def documents_readable(reader: Reader) -> QuerySet[Document]:
    """The documents ``reader`` may read, within what they narrowed the question to."""
    sql, params = readable_collections_sql(reader)
    documents = Document.objects.filter(collection_id__in=RawSQL(sql, params))  # noqa: S611 - as above
    if reader.collection_ids is not None:
        documents = documents.filter(collection_id__in=reader.collection_ids)
    if reader.document_ids is not None:
        documents = documents.filter(id__in=reader.document_ids)
    return documents


def reader_is_admin(reader: Reader) -> bool:
    return (
        Membership.objects.for_tenant(reader.tenant_id)
        .filter(user_id=reader.user_id, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN])
        .exists()
    )


def documents_changeable(reader: Reader) -> QuerySet[Document]:
    """The documents ``reader`` may edit, replace or delete: any readable one for owners and
    admins, else the readable ones they added."""
    documents = documents_readable(reader)
    if reader_is_admin(reader):
        return documents
    return documents.filter(Q(created_by_id=reader.user_id))


def document_change_check(*, reader: Reader, document: Document) -> None:
    """Refuse (403 ``not_document_owner``) a change to a readable document the asker may not change."""
    if not documents_changeable(reader).filter(id=document.pk).exists():
        raise ApplicationError(
            "Only the person who added this document, or an admin, may change or delete it.",
            code="not_document_owner",
            status=403,
        )


def scope_validate(
    *, reader: Reader, collection_ids: Sequence[int] | None, document_ids: Sequence[int] | None
) -> Reader:
    """``reader`` narrowed to the collections and documents asked for; an id that does not exist
    or that the asker may not read is refused (404 ``not_found``), never quietly dropped or widened."""
    if collection_ids is not None:
        wanted = set(collection_ids)
        found = set(collections_readable(reader).filter(id__in=wanted).values_list("id", flat=True))
        if wanted - found:
            raise ApplicationError(
                f"No such collection: {', '.join(str(i) for i in sorted(wanted - found))}.",
                code="collection_not_found",
                status=404,
            )
    if document_ids is not None:
        wanted = set(document_ids)
        found = set(documents_readable(reader).filter(id__in=wanted).values_list("id", flat=True))
        if wanted - found:
            raise ApplicationError(
                f"No such document: {', '.join(str(i) for i in sorted(wanted - found))}.",
                code="document_not_found",
                status=404,
            )
    return reader.narrowed(collection_ids=collection_ids, document_ids=document_ids)
