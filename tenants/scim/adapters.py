"""django-scim2 adapters: SCIM Users and Groups (the JSON Okta and Microsoft Entra send) to and
from this tenant's ScimUser and ScimGroup rows. Storing goes through tenants.scim.services."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django_scim import constants
from django_scim import exceptions as scim_errors
from django_scim.adapters import SCIMGroup, SCIMUser
from django_scim.models import SCIMServiceProviderConfig

from core.platform.exceptions import ApplicationError
from tenants.scim import services
from tenants.scim.lookups import ScimGroupFilter, ScimUserFilter
from tenants.scim.models import ScimGroup, ScimUser

_USER_URN = constants.SchemaURI.USER + ":"
_GROUP_URN = constants.SchemaURI.GROUP + ":"
_VALID_OPS = ("add", "replace", "remove")


def _bad(detail: str, scim_type: str = "invalidValue") -> scim_errors.BadRequestError:
    return scim_errors.BadRequestError(detail, scim_type=scim_type)


@contextlib.contextmanager
def _as_scim_errors() -> Iterator[None]:
    """A service's refusal, as the SCIM error body with the same status."""
    try:
        yield
    except ApplicationError as exc:
        scim_type = "uniqueness" if exc.status == 409 else None
        raise scim_errors.SCIMException(exc.message, status=exc.status, scim_type=scim_type) from exc


def _text(value: Any, name: str, *, limit: int = 254) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f'"{name}" must be a string.')
    return value.strip()[:limit]


def _boolean(value: Any, name: str) -> bool:
    """SCIM booleans; Microsoft Entra sends them as the strings "True" and "False" in PATCH."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(f'"{name}" must be a boolean.')


def _email(value: Any) -> str:
    email = _text(value, "emails.value")
    try:
        EmailValidator()(email)
    except ValidationError as exc:
        raise _bad(f"'{email}' is not an e-mail address.") from exc
    return email.lower()


def _primary_email(emails: Any) -> str | None:
    """The primary address of a SCIM ``emails`` list (else the first), or None if there is none."""
    if emails is None:
        return None
    if isinstance(emails, dict):  # one address sent bare
        emails = [emails]
    if not isinstance(emails, list) or not all(isinstance(e, dict) for e in emails):
        raise _bad('"emails" must be a list of objects with a "value".')
    ordered = [e for e in emails if e.get("primary") in (True, "true", "True")] + emails
    return _email(ordered[0].get("value")) if ordered else None


def _path(path: Any, urn: str) -> str:
    if not isinstance(path, str) or not path.strip():
        raise _bad('A PATCH operation\'s "path" must be a non-empty string.', "invalidPath")
    lowered: str = path.strip().lower()
    return lowered.removeprefix(urn.lower())


def _operations(operations: Any) -> Iterator[tuple[str, str | None, Any]]:
    """(op, path or None, value) of each PATCH operation, validated; without a path, one per
    attribute of the value (Okta's ``{"op": "replace", "value": {"active": false}}``)."""
    if not isinstance(operations, list):
        raise _bad('"Operations" must be a list.', "invalidSyntax")
    for operation in operations:
        if not isinstance(operation, dict):
            raise _bad("Each PATCH operation must be an object.", "invalidSyntax")
        op = operation.get("op")
        if not isinstance(op, str) or op.lower() not in _VALID_OPS:
            raise _bad(f"Unknown PATCH op {op!r}: use add, replace or remove.", "invalidSyntax")
        path, value = operation.get("path"), operation.get("value")
        if path is not None:
            yield op.lower(), path, value
        elif op.lower() == "remove":
            raise _bad('A "remove" operation needs a "path".', "noTarget")
        elif isinstance(value, dict):
            for attribute, attribute_value in value.items():
                yield op.lower(), attribute, attribute_value
        else:
            raise _bad('Without a "path", the value must be an object of attributes.', "invalidValue")


class _RowMeta:
    """SCIM's ``meta`` of one of our rows (users and groups alike: both carry created/last_modified)."""

    obj: Any
    resource_type: str
    location: str

    @property
    def meta(self) -> dict[str, str]:
        return {
            "resourceType": self.resource_type,
            "created": self.obj.created.isoformat(),
            "lastModified": self.obj.last_modified.isoformat(),
            "location": self.location,
        }


class ScimUserAdapter(_RowMeta, SCIMUser):  # type: ignore[misc]
    """A person provisioned into this tenant. The account itself is global and shared with other
    organisations, so names, e-mails and passwords the provider sends never change it."""

    obj: ScimUser
    id_field = "scim_id"
    ATTR_MAP = ScimUserFilter.attr_map

    @property
    def display_name(self) -> str:
        full = f"{self.obj.given_name} {self.obj.family_name}".strip()
        return self.obj.display_name or full or self.obj.user_name

    @property
    def groups(self) -> list[dict[str, str]]:
        return [
            {
                "value": group.scim_id,
                "$ref": ScimGroupAdapter(group, self.request).location,
                "display": group.display_name,
            }
            for group in self.obj.groups.all()
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemas": [constants.SchemaURI.USER],
            "id": self.id,
            "externalId": self.obj.external_id or None,
            "userName": self.obj.user_name,
            "name": {
                "givenName": self.obj.given_name,
                "familyName": self.obj.family_name,
                "formatted": f"{self.obj.given_name} {self.obj.family_name}".strip(),
            },
            "displayName": self.display_name,
            "emails": [{"value": self.obj.email, "primary": True, "type": "work"}],
            "active": self.obj.active,
            "groups": self.groups,
            "meta": self.meta,
        }

    def validate_dict(self, d: dict[str, Any]) -> None:
        if not isinstance(d.get("userName"), str) or not d["userName"].strip():
            raise _bad('"userName" is required.', "invalidValue")

    def from_dict(self, d: dict[str, Any]) -> None:
        """A whole User (POST or PUT): what it leaves out is cleared, except ``active``, which
        stays as it was (a PUT that forgets it must not turn anyone on or off)."""
        self.obj.user_name = _text(d.get("userName"), "userName")
        self.obj.external_id = _text(d.get("externalId"), "externalId")
        self.obj.display_name = _text(d.get("displayName"), "displayName")
        name = d.get("name") or {}
        if not isinstance(name, dict):
            raise _bad('"name" must be an object.')
        self.obj.given_name = _text(name.get("givenName"), "name.givenName", limit=150)
        self.obj.family_name = _text(name.get("familyName"), "name.familyName", limit=150)
        email = _primary_email(d.get("emails"))
        if email is None:  # Okta and Entra send emails; a bare userName may be the address
            email = self.obj.email or _email(self.obj.user_name)
        self.obj.email = email
        if d.get("active") is not None:
            self.obj.active = _boolean(d["active"], "active")

    def save(self) -> None:
        with _as_scim_errors():
            services.scim_user_save(tenant=self.request.tenant, scim_user=self.obj)

    def delete(self) -> None:
        with _as_scim_errors():
            services.scim_user_delete(tenant=self.request.tenant, scim_user=self.obj)

    def handle_operations(self, operations: Any) -> None:
        for op, path, value in _operations(operations):
            self._patch(op, _path(path, _USER_URN), value)
        self.save()

    def _patch(self, op: str, path: str, value: Any) -> None:
        if op == "remove":
            value = None
        if path == "active":
            if value is None:
                raise _bad('"active" cannot be removed.', "mutability")
            self.obj.active = _boolean(value, "active")
        elif path == "username":
            if not _text(value, "userName"):
                raise _bad('"userName" cannot be empty.', "invalidValue")
            self.obj.user_name = _text(value, "userName")
        elif path == "externalid":
            self.obj.external_id = _text(value, "externalId")
        elif path == "displayname":
            self.obj.display_name = _text(value, "displayName")
        elif path == "name.givenname":
            self.obj.given_name = _text(value, "name.givenName", limit=150)
        elif path == "name.familyname":
            self.obj.family_name = _text(value, "name.familyName", limit=150)
        elif path == "name":
            if not isinstance(value, dict | None):
                raise _bad('"name" must be an object.')
            for part in ("givenName", "familyName"):
                if value is None or part in value:
                    self._patch(op, f"name.{part.lower()}", None if value is None else value[part])
        elif path == "emails" or (path.startswith("emails[") and path.endswith("].value")):
            # Entra: emails[type eq "work"].value = "a@b"; Okta: emails = [{value, primary}]
            email = _email(value) if isinstance(value, str) else _primary_email(value)
            if email is not None:
                self.obj.email = email
        # Anything else (title, phone numbers, the enterprise extension...) Strata does not keep.


class ScimGroupAdapter(_RowMeta, SCIMGroup):  # type: ignore[misc]
    """A group of the tenant's identity provider; groups named for a role grant it (see
    ``services.ROLE_GROUPS``)."""

    obj: ScimGroup
    id_field = "scim_id"
    ATTR_MAP = ScimGroupFilter.attr_map

    def __init__(self, obj: ScimGroup, request: Any = None) -> None:
        super().__init__(obj, request)
        self._members: list[str] | None = None  # None: leave them as they are

    @property
    def members(self) -> list[dict[str, str]]:
        if self.obj.pk is None:
            return []
        return [
            {
                "value": member.scim_id,
                "$ref": ScimUserAdapter(member, self.request).location,
                "display": member.user_name,
            }
            for member in self.obj.members.all()
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemas": [constants.SchemaURI.GROUP],
            "id": self.id,
            "externalId": self.obj.external_id or None,
            "displayName": self.obj.display_name,
            "members": self.members,
            "meta": self.meta,
        }

    def validate_dict(self, d: dict[str, Any]) -> None:
        if not isinstance(d.get("displayName"), str) or not d["displayName"].strip():
            raise _bad('"displayName" is required.', "invalidValue")

    def from_dict(self, d: dict[str, Any]) -> None:
        self.obj.display_name = _text(d.get("displayName"), "displayName")
        self.obj.external_id = _text(d.get("externalId"), "externalId")
        if "members" in d:
            self._members = _member_ids(d["members"])

    def save(self) -> None:
        with _as_scim_errors():
            services.scim_group_save(tenant=self.request.tenant, scim_group=self.obj, members=self._members)

    def delete(self) -> None:
        with _as_scim_errors():
            services.scim_group_delete(tenant=self.request.tenant, scim_group=self.obj)

    def handle_operations(self, operations: Any) -> None:
        """Members added and removed as Entra sends them (``path: "members"``, a list of
        ``{value}``) and as Okta does (``path: 'members[value eq "id"]'``), and renames."""
        members = list(self.obj.members.values_list("scim_id", flat=True))
        for op, path, value in _operations(operations):
            path = _path(path, _GROUP_URN)
            if path == "members":
                ids = [] if value is None else _member_ids(value)
                if op == "add":
                    members += [i for i in ids if i not in members]
                elif op == "replace":
                    members = ids
                else:  # remove: the ones named, or all of them
                    members = [i for i in members if i not in ids] if ids else []
            elif path.startswith('members[value eq "') and path.endswith('"]') and op == "remove":
                removed = path[len('members[value eq "') : -2]  # ids are lower-case UUIDs, as is the path
                members = [i for i in members if i.lower() != removed]
            elif path == "displayname" and op != "remove":
                self.obj.display_name = _text(value, "displayName")
                if not self.obj.display_name:
                    raise _bad('"displayName" cannot be empty.')
            elif path == "externalid":
                self.obj.external_id = "" if op == "remove" else _text(value, "externalId")
            elif path == "id":
                continue  # Okta repeats the id in its rename
            else:
                raise scim_errors.NotImplementedError(f"PATCH of '{path}' on a group is not supported.")
        self._members = members
        self.save()


def _member_ids(value: Any) -> list[str]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(m, dict) and isinstance(m.get("value"), str) for m in value):
        raise _bad('"members" must be a list of objects with a "value" (a user id).')
    return [m["value"] for m in value]


class ScimServiceProviderConfig(SCIMServiceProviderConfig):  # type: ignore[misc]
    """What this service provider does: PATCH and ``eq`` filters, no bulk, sort, ETags or password
    changes (passwords a provider sends are ignored: the account is global)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemas": [constants.SchemaURI.SERVICE_PROVIDER_CONFIG],
            "documentationUri": None,
            "patch": {"supported": True},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": 200},
            "changePassword": {"supported": False},
            "sort": {"supported": False},
            "etag": {"supported": False},
            "authenticationSchemes": [
                {
                    "type": "oauthbearertoken",
                    "name": "OAuth Bearer Token",
                    "description": "The organisation's SCIM token (POST /api/sso/scim-token/), on its own host only.",
                    "primary": True,
                }
            ],
            "meta": self.meta,
        }
