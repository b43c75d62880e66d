"""SAML 2.0 sign-in per tenant: the IdP's metadata read and checked, and allauth's SAML app built from it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from lxml.etree import LxmlError
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

# Metadata of one IdP is a few kilobytes; an aggregate federation feed (megabytes) is not what we take.
METADATA_MAX_BYTES = 512 * 1024
METADATA_TIMEOUT_SECONDS = 10


class SamlMetadataError(ValueError):
    """The metadata given cannot configure sign-in; the message says why, for the owner."""


@dataclass(frozen=True)
class SamlIdentityProvider:
    """What sign-in needs from the IdP's metadata (the first signing certificate is the one trusted)."""

    entity_id: str
    sso_url: str
    certificate: str  # base64 DER, no PEM armour (python3-saml's x509cert)


def saml_metadata_fetch(*, url: str) -> str:
    """The metadata XML published at ``url`` (https only in production; http on loopback elsewhere)."""
    saml_metadata_url_check(url=url)
    try:
        with requests.get(url, timeout=METADATA_TIMEOUT_SECONDS, stream=True, allow_redirects=False) as response:
            if response.status_code != 200:
                raise SamlMetadataError(f"The metadata address answered {response.status_code}, not 200.")
            body = b""
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > METADATA_MAX_BYTES:
                    raise SamlMetadataError(f"The metadata is larger than {METADATA_MAX_BYTES // 1024} KiB.")
    except requests.RequestException as exc:
        raise SamlMetadataError(f"The metadata address could not be read: {type(exc).__name__}.") from exc
    return body.decode("utf-8", errors="replace")


def saml_metadata_url_check(*, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and not settings.PRODUCTION and _is_loopback(parts.hostname or ""):
        return
    raise SamlMetadataError("The metadata address must be https://.")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    import base64
    import binascii

    from cryptography import x509

    try:
        x509.load_der_x509_certificate(base64.b64decode(certificate, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise SamlMetadataError("The signing certificate in the metadata cannot be read.") from exc
