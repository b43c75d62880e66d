"""SAML 2.0 sign-in per tenant: the IdP's metadata read and checked, and allauth's SAML app built from it.

The flow is allauth's SAML provider (python3-saml), SP-initiated only. Per tenant:
- the SocialApp exists only on its tenant's host (tenants.sso.adapter lists no other), its
  ``client_id`` is the tenant's subdomain, its ``provider_id`` ``saml-t<tenant id>-<IdP entity id hash>``;
- the SP's entity id (its metadata address) and its ACS address are on the tenant's host, so a
  response meant for one tenant fails the audience and destination checks on another's;
- the IdP is the one in the metadata saved with the configuration (fetched once when the owner
  saves an address, never at sign-in): its entity id, redirect sign-in address and signing key.

What a response must pass (python3-saml in strict mode, then allauth): a signature on the
assertion by that key (SHA-256 or better), the audience, destination and recipient of this host,
its validity window, and an InResponseTo naming a request this browser session made and has not
used yet. Responses the IdP sends unasked (IdP-initiated) are refused: they carry no request to
tie them to the session, which is what makes login CSRF and replay hard. Each request id is used once
(allauth drops the stashed state when it is read), so a response sent again finds nothing.
"""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from allauth.socialaccount.models import SocialApp, SocialLogin
from allauth.socialaccount.providers.saml.provider import SAMLProvider
from django.urls import reverse
from lxml.etree import LxmlError
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

from core.platform.exceptions import ApplicationError

if TYPE_CHECKING:
    from django.http import HttpRequest

    from tenants.models import Tenant
    from tenants.sso.models import SsoConfig
    from tenants.sso.services import SsoIdentity

# Metadata of one IdP is a few kilobytes; an aggregate federation feed (megabytes) is not what we take.
METADATA_MAX_BYTES = 512 * 1024
METADATA_TIMEOUT_SECONDS = 10


class SamlMetadataError(ApplicationError, ValueError):
    """The metadata given cannot configure sign-in; the message says why, for the owner. A ValueError
    too: /sso/login/ answers a stored configuration that no longer parses as a provider failure (502)."""

    def __init__(self, message: str, *, code: str = "metadata_invalid", status: int = 400) -> None:
        super().__init__(message, code=code, status=status)


@dataclass(frozen=True)
class SamlIdentityProvider:
    """What sign-in needs from the IdP's metadata (the first signing certificate is the one trusted)."""

    entity_id: str
    sso_url: str
    certificate: str  # base64 DER, no PEM armour (python3-saml's x509cert)


def saml_metadata_fetch(*, url: str) -> str:
    """The metadata XML published at ``url`` (checked by tenants.sso.services.provider_url_check)."""
    try:
        with requests.get(url, timeout=METADATA_TIMEOUT_SECONDS, stream=True, allow_redirects=False) as response:
            if response.status_code != 200:
                raise SamlMetadataError(
                    f"The metadata address answered {response.status_code}, not 200.",
                    code="metadata_unreachable",
                    status=502,
                )
            body = b""
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > METADATA_MAX_BYTES:
                    raise SamlMetadataError(f"The metadata is larger than {METADATA_MAX_BYTES // 1024} KiB.")
    except requests.RequestException as exc:
        raise SamlMetadataError(
            f"The metadata address could not be read ({type(exc).__name__}).", code="metadata_unreachable", status=502
        ) from exc
    return body.decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=32)
def saml_metadata_parse(*, xml: str) -> SamlIdentityProvider:
    """The IdP in ``xml`` (an EntityDescriptor with an IDPSSODescriptor), or SamlMetadataError: what is missing."""
    if len(xml.encode()) > METADATA_MAX_BYTES:
        raise SamlMetadataError(f"The metadata is larger than {METADATA_MAX_BYTES // 1024} KiB.")
    try:
        # python3-saml's parser refuses DTDs and entities (defusedxml's rules): no XXE, no billion laughs.
        parsed = OneLogin_Saml2_IdPMetadataParser.parse(
            xml, required_sso_binding=OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT
        )
    except (LxmlError, ValueError) as exc:
        raise SamlMetadataError(f"The metadata is not valid XML: {exc}") from exc
    idp: dict[str, Any] = parsed.get("idp") or {}
    entity_id = idp.get("entityId")
    if not entity_id:
        raise SamlMetadataError("The metadata has no identity provider (an EntityDescriptor with an IDPSSODescriptor).")
    sso_url = (idp.get("singleSignOnService") or {}).get("url")
    if not sso_url:
        raise SamlMetadataError("The metadata has no SingleSignOnService with the HTTP-Redirect binding.")
    if urlsplit(sso_url).scheme not in ("https", "http"):
        raise SamlMetadataError("The SingleSignOnService address is not a web address.")
    certificates = [idp["x509cert"]] if idp.get("x509cert") else (idp.get("x509certMulti") or {}).get("signing", [])
    if not certificates:
        raise SamlMetadataError("The metadata has no signing certificate (a KeyDescriptor with an X509Certificate).")
    certificate = "".join(certificates[0].split())
    _certificate_check(certificate)
    return SamlIdentityProvider(entity_id=entity_id, sso_url=sso_url, certificate=certificate)


def _certificate_check(certificate: str) -> None:
    from cryptography import x509

    try:
        x509.load_der_x509_certificate(base64.b64decode(certificate, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise SamlMetadataError("The signing certificate in the metadata cannot be read.") from exc


# --- sign-in ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamlServiceProvider:
    """What an owner registers at the IdP for their tenant (allauth's URL names, on this host)."""

    entity_id: str  # the SP's metadata address, as allauth names it
    acs_url: str


def saml_service_provider(*, request: HttpRequest, tenant: Tenant) -> SamlServiceProvider:
    slug = tenant.subdomain
    return SamlServiceProvider(
        entity_id=request.build_absolute_uri(reverse("saml_metadata", args=[slug])),
        acs_url=request.build_absolute_uri(reverse("saml_acs", args=[slug])),
    )


def saml_social_app(*, config: SsoConfig) -> SocialApp:
    """An unsaved SocialApp for allauth's SAML provider: the tenant's configuration is the one source."""
    idp = saml_metadata_parse(xml=config.metadata_xml)
    return SocialApp(
        provider=SAMLProvider.id,
        provider_id=config.provider_id,
        name=config.tenant.name,
        client_id=config.tenant.subdomain,  # allauth's "organization slug" in /sso/saml/<slug>/...
        settings={
            "idp": {"entity_id": idp.entity_id, "sso_url": idp.sso_url, "x509cert": idp.certificate},
            "advanced": {
                "strict": True,  # audience, destination, recipient, validity window, InResponseTo
                "want_assertion_signed": True,
                "want_message_signed": False,  # most IdPs sign the assertion only; that is what we trust
                "reject_deprecated_algorithm": True,  # no SHA-1 signatures or digests
                "reject_idp_initiated_sso": True,
                "want_attribute_statement": False,  # a NameID in e-mail format is enough
                "want_name_id": True,
                "authn_request_signed": False,  # the SP has no key: requests carry nothing secret
            },
        },
    )


def saml_identity(sociallogin: SocialLogin) -> SsoIdentity:
    """What the IdP vouched for in a verified response: the subject (its subject-id attribute, else
    the NameID), the e-mail (mapped attribute, else an e-mail-format NameID), and whether it says the
    address is verified (an ``email_verified`` attribute; SAML has no standard one, so absent is no)."""
    from tenants.sso.services import SsoIdentity  # services imports this module for the metadata checks

    attributes: dict[str, list[Any]] = dict(sociallogin.account.extra_data or {})
    primary = sociallogin.email_addresses[0] if sociallogin.email_addresses else None
    names = (_attribute(attributes, "first_name"), _attribute(attributes, "last_name"))
    name = " ".join(part for part in names if part)
    return SsoIdentity(
        subject=sociallogin.account.uid,
        email=primary.email if primary is not None else "",
        email_verified=bool(primary is not None and primary.verified),
        name=name,
        claims={key: values[0] if len(values) == 1 else values for key, values in attributes.items()},
    )


def _attribute(attributes: dict[str, list[Any]], key: str) -> str:
    """The first value of the attribute allauth's SAML mapping names for ``key``."""
    for name in SAMLProvider.default_attribute_mapping.get(key, []):
        values = attributes.get(name)
        if values:
            return str(values[0])
    return ""
