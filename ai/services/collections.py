"""Collections: create, change, delete (moving their documents), and who is named in them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction

from ai.models import Collection, CollectionMember, Document
from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.audit.services import Action, audit_record
from tenants.models import ApiKey, Membership, Tenant


def _people_check(*, tenant: Tenant, member_ids: Sequence[int]) -> list[int]:
    wanted = set(member_ids)
    found = set(Membership.objects.for_tenant(tenant).filter(user_id__in=wanted).values_list("user_id", flat=True))
    if wanted - found:
        missing = ", ".join(str(i) for i in sorted(wanted - found))
        raise ApplicationError(
            f"Not a member of this organisation: {missing}.",
            code="invalid",
            extra={"fields": {"member_ids": [f"Not a member of this organisation: {missing}."]}},
        )
    return sorted(wanted)


def _keys_check(*, tenant: Tenant, api_key_ids: Sequence[int]) -> list[int]:
    """The user rows the keys act through (a key's grant is a CollectionMember row of its user)."""
    wanted = set(api_key_ids)
    keys = dict(
        ApiKey.objects.for_tenant(tenant).filter(id__in=wanted, revoked__isnull=True).values_list("id", "user_id")
    )
    if wanted - set(keys):
        missing = ", ".join(str(i) for i in sorted(wanted - set(keys)))
        raise ApplicationError(
            f"No such API key: {missing}.",
            code="invalid",
            extra={"fields": {"api_key_ids": [f"No such API key: {missing}."]}},
        )
    return sorted(keys.values())


def _grants_replace(*, collection: Collection, user_ids: Sequence[int], keys: bool, tenant: Tenant) -> None:
    """Replace the people (or the keys) named in ``collection``, leaving the other kind alone."""
    key_users = ApiKey.objects.for_tenant(tenant).values("user_id")
    current = CollectionMember.objects.filter(collection=collection)
    current = current.filter(user_id__in=key_users) if keys else current.exclude(user_id__in=key_users)
    current.exclude(user_id__in=user_ids).delete()
    CollectionMember.objects.bulk_create(
        [CollectionMember(collection=collection, user_id=user_id) for user_id in user_ids], ignore_conflicts=True
    )


def _name_taken() -> ApplicationError:
    return ApplicationError(
        "A collection with this name exists already.",
        code="invalid",
        extra={"fields": {"name": ["A collection with this name exists already."]}},
    )


def collection_create(
    *,
    tenant: Tenant,
    user: User,
    name: str,
    visibility: str = Collection.Visibility.TENANT,
    member_ids: Sequence[int] = (),
    api_key_ids: Sequence[int] = (),
) -> Collection:
    people = _people_check(tenant=tenant, member_ids=member_ids)
    key_users = _keys_check(tenant=tenant, api_key_ids=api_key_ids)
    try:
        with transaction.atomic():
            collection = Collection.objects.create(name=name.strip(), visibility=visibility, created_by=user)
            CollectionMember.objects.bulk_create(
                CollectionMember(collection=collection, user_id=user_id) for user_id in [*people, *key_users]
            )
    except IntegrityError as exc:
        raise _name_taken() from exc
    return collection


def collection_update(
    *,
    tenant: Tenant,
    collection: Collection,
    name: str | None = None,
    visibility: str | None = None,
    member_ids: Sequence[int] | None = None,
    api_key_ids: Sequence[int] | None = None,
) -> Collection:
    """Rename, change who may read, or replace the people or keys named; keys not named keep theirs."""
    fields = []
    if name is not None:
        collection.name = name.strip()
        fields.append("name")
    if visibility is not None:
        if collection.is_default and visibility != Collection.Visibility.TENANT:
            raise ApplicationError(
                "The default collection is read by everyone in the organisation.",
                code="invalid",
                extra={"fields": {"visibility": ["The default collection is tenant-wide."]}},
            )
        collection.visibility = visibility
        fields.append("visibility")
    people = _people_check(tenant=tenant, member_ids=member_ids) if member_ids is not None else None
    key_users = _keys_check(tenant=tenant, api_key_ids=api_key_ids) if api_key_ids is not None else None
    try:
        with transaction.atomic():
            if fields:
                collection.save(update_fields=[*fields, "updated"])
            if people is not None:
                _grants_replace(collection=collection, user_ids=people, keys=False, tenant=tenant)
            if key_users is not None:
                _grants_replace(collection=collection, user_ids=key_users, keys=True, tenant=tenant)
    except IntegrityError as exc:
        raise _name_taken() from exc
    return collection


def collection_delete(
    *, tenant: Tenant, collection: Collection, move_to: Collection | None = None, request: Any = None
) -> int:
    """Delete ``collection``; its documents go to ``move_to`` first (required when it holds any).
    Returns how many documents moved. The default collection stays."""
    if collection.is_default:
        raise ApplicationError("The default collection cannot be deleted.", code="default_collection", status=409)
    if move_to is not None and move_to.pk == collection.pk:
        raise ApplicationError("Move the documents to another collection.", code="invalid", status=400)
    with transaction.atomic():
        locked = Collection.objects.select_for_update().get(pk=collection.pk)
        documents = Document.objects.filter(collection=locked)
        if move_to is None and documents.exists():
            raise ApplicationError(
                "This collection holds documents: say where they go with ?move_to=<collection id>.",
                code="collection_not_empty",
                status=409,
            )
        moved = documents.update(collection=move_to) if move_to is not None else 0
        audit_record(
            tenant=tenant,
            action=Action.COLLECTION_DELETED,
            target=f"collection {locked.pk}: {locked.name}"[:300],
            changes={"documents_moved": moved, "moved_to": move_to.pk if move_to is not None else None},
            request=request,
        )
        locked.delete()
    return moved


def collection_members(*, tenant: Tenant, collection: Collection) -> dict[str, list[Any]]:
    """The people and the keys named in ``collection``: ``{"people": [User], "keys": [ApiKey]}``."""
    user_ids = list(CollectionMember.objects.filter(collection=collection).values_list("user_id", flat=True))
    keys = list(ApiKey.objects.for_tenant(tenant).filter(user_id__in=user_ids))
    key_users = {key.user_id for key in keys}
    people = list(User.objects.filter(id__in=set(user_ids) - key_users).order_by("email"))
    return {"people": people, "keys": keys}


def collection_grants(*, tenant: Tenant) -> dict[int, tuple[list[int], list[int]]]:
    """Every collection's named people and keys: ``{collection id: (user ids, API key ids)}``, in two queries."""
    keys = dict(ApiKey.objects.for_tenant(tenant).values_list("user_id", "id"))
    grants: dict[int, tuple[list[int], list[int]]] = {}
    for collection_id, user_id in CollectionMember.objects.order_by("user_id").values_list("collection_id", "user_id"):
        people, key_ids = grants.setdefault(collection_id, ([], []))
        if user_id in keys:
            key_ids.append(keys[user_id])
        else:
            people.append(user_id)
    return grants
