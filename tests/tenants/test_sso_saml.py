"""SAML 2.0 sign-in per tenant, against a real SAML IdP process on loopback (tests/fakes/saml_idp.py, pysaml2)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest

from tenants.sso.saml import SamlMetadataError, saml_metadata_fetch, saml_metadata_parse
from tests.fakes.saml_idp import SamlIdp

pytestmark = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed (tests/run.sh)")


@pytest.fixture(scope="module")
def idp() -> Iterator[SamlIdp]:
    with SamlIdp() as running:
        yield running


@pytest.fixture
def saml_idp(idp: SamlIdp) -> SamlIdp:
    """The IdP, answering correctly for the default person unless a test says otherwise."""
    idp.configure()
    return idp


# --- the IdP's metadata --------------------------------------------------------------------------


def test_lxml_and_xmlsec_carry_the_same_libxml2() -> None:
    # xmlsec refuses to import beside another libxml2; the pins in pyproject.toml keep them together.
    import lxml.etree
    import xmlsec

    assert xmlsec.get_libxml_version() == lxml.etree.LIBXML_VERSION


def test_metadata_read_from_the_idp_names_its_entity_sign_in_address_and_certificate(saml_idp: SamlIdp) -> None:
    provider = saml_metadata_parse(xml=saml_metadata_fetch(url=saml_idp.metadata_url))

    assert provider.entity_id == saml_idp.entity_id
    assert provider.sso_url == saml_idp.sso_url
    pem = saml_idp.seen()["certificate"]
    assert provider.certificate == "".join(pem.split("-----")[2].split())


@pytest.mark.parametrize(
    ("xml", "says"),
    [
        ("not xml at all", "not valid XML"),
        ('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "not valid XML"),
        ('<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>', "no identity provider"),
    ],
)
def test_metadata_that_cannot_configure_sign_in_is_refused_with_the_reason(xml: str, says: str) -> None:
    with pytest.raises(SamlMetadataError, match=says):
        saml_metadata_parse(xml=xml)


def test_metadata_without_a_redirect_sign_in_address_or_a_signing_certificate_is_refused(saml_idp: SamlIdp) -> None:
    xml = saml_idp.metadata_xml()
    no_redirect = xml.replace("HTTP-Redirect", "HTTP-Artifact")
    with pytest.raises(SamlMetadataError, match="no SingleSignOnService"):
        saml_metadata_parse(xml=no_redirect)
    no_certificate = re.sub(r"<(\w+:)?KeyDescriptor.*?</(\w+:)?KeyDescriptor>", "", xml, flags=re.DOTALL)
    with pytest.raises(SamlMetadataError, match="no signing certificate"):
        saml_metadata_parse(xml=no_certificate)
    broken_certificate = re.sub(r"(<(?:\w+:)?X509Certificate>)[^<]+", r"\1QUJD", xml)
    with pytest.raises(SamlMetadataError, match="cannot be read"):
        saml_metadata_parse(xml=broken_certificate)


def test_metadata_address_is_https_unless_on_loopback_outside_production(saml_idp: SamlIdp) -> None:
    with pytest.raises(SamlMetadataError, match="must be https"):
        saml_metadata_fetch(url="http://idp.example.com/metadata")
    with pytest.raises(SamlMetadataError, match="answered 404"):
        saml_metadata_fetch(url=f"{saml_idp.base}/nothing-here")
