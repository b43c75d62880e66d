"""SAML 2.0 sign-in per tenant, against a real SAML IdP process on loopback (tests/fakes/saml_idp.py, pysaml2).

Our app runs in-process (Django's test client, inside the test's transaction); every hop to the
IdP is real HTTP: the AuthnRequest redirect is fetched from the IdP process with httpx, and the
signed response it answers with is posted to our ACS as the browser would post its form.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from allauth.socialaccount.models import SocialAccount

from core.models import User
from tenants.audit.models import AuditEntry
from tenants.models import Membership
from tenants.sso.models import SsoConfig
from tenants.sso.saml import SamlMetadataError, saml_metadata_fetch, saml_metadata_parse
from tests.conftest import World, host_client
from tests.fakes.saml_idp import SamlIdp, form_fields
from tests.processes import committed

pytestmark = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is not installed (tests/run.sh)")


@pytest.fixture(scope="module")
def idp() -> Iterator[SamlIdp]:
    with SamlIdp() as running:
        yield running


@pytest.fixture
def saml_idp(idp: SamlIdp) -> SamlIdp:
    """The IdP, answering correctly for the default person (ada@acme.test, verified) unless told otherwise."""
    idp.configure()
    return idp


@pytest.fixture(scope="module")
def idp_metadata(idp: SamlIdp) -> str:
    return idp.metadata_xml()


def saml_configure(world: World, metadata_xml: str, **overrides: Any) -> SsoConfig:
    values: dict[str, Any] = {
        "protocol": "saml",
        "metadata_xml": metadata_xml,
        "allowed_domains": [f"{world.tenant.subdomain}.test"],
        "default_role": "member",
    }
    return SsoConfig.objects.create(tenant=world.tenant, **(values | overrides))


@pytest.fixture
def acme_saml(acme: World, saml_idp: SamlIdp, idp_metadata: str) -> SsoConfig:
    return saml_configure(acme, idp_metadata)


def sso_start(client: Any, next_url: str = "/") -> str:
    """Our redirect to the IdP (HTTP-Redirect binding)."""
    response = client.get("/sso/login/", {"next": next_url})
    assert response.status_code == 302, response.content
    return response["Location"]


def idp_answer(url: str) -> tuple[str, dict[str, str]]:
    """The IdP's answer to the AuthnRequest: the ACS address and the form fields the browser posts there."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return form_fields(response.text)


def acs_post(client: Any, acs_url: str, fields: dict[str, str]) -> Any:
    """What the browser does with the IdP's form: post it to the ACS, then follow to the finishing step."""
    posted = client.post(urlsplit(acs_url).path, urlencode(fields), content_type="application/x-www-form-urlencoded")
    if posted.status_code != 302:
        return posted
    return client.get(posted["Location"])


def sso_sign_in(client: Any, next_url: str = "/") -> Any:
    return acs_post(client, *idp_answer(sso_start(client, next_url)))


def signed_in(client: Any) -> bool:
    return client.get("/account/").status_code == 200


def refusal_code(response: Any) -> str:
    assert response.status_code in (400, 403, 404, 502), response.status_code
    body = response.content.decode()
    assert 'id="sso-refused"' in body, body[:500]
    return body.split('data-code="', 1)[1].split('"', 1)[0]


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


# --- Configuration ---------------------------------------------------------------------------------


def test_owner_puts_the_idps_metadata_address_and_the_metadata_is_read_and_kept(acme: World, saml_idp: SamlIdp) -> None:
    owner = acme.client(acme.owner_token)
    body = {"protocol": "saml", "metadata_url": saml_idp.metadata_url, "allowed_domains": ["acme.test"]}
    put = owner.put("/api/sso/", body, format="json")
    assert put.status_code == 200, put.content
    got = owner.get("/api/sso/").json()
    assert got["protocol"] == "saml" and got["metadata_url"] == saml_idp.metadata_url
    assert f'entityID="{saml_idp.entity_id}"' in got["metadata_xml"]  # what sign-in will trust
    # What the owner registers at the IdP: this host's SP.
    assert got["sp_entity_id"] == "http://acme.localhost/sso/saml/acme/metadata/"
    assert got["callback_url"] == "http://acme.localhost/sso/saml/acme/acs/"
    assert AuditEntry.objects.filter(tenant_id=acme.tenant.pk, action="sso.changed").exists()


def test_owner_puts_pasted_metadata_xml(acme: World, saml_idp: SamlIdp, idp_metadata: str) -> None:
    put = acme.client(acme.owner_token).put(
        "/api/sso/", {"protocol": "saml", "metadata_xml": idp_metadata}, format="json"
    )
    assert put.status_code == 200, put.content
    assert SsoConfig.objects.for_tenant(acme.tenant).get().metadata_xml == idp_metadata.strip()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({}, 400, "metadata_required", id="neither"),
        pytest.param({"metadata_xml": "<not-metadata/>"}, 400, "metadata_invalid", id="not-an-idp"),
        pytest.param({"metadata_xml": "<<<"}, 400, "metadata_invalid", id="not-xml"),
        pytest.param({"metadata_url": "http://idp.example.com/metadata"}, 400, "metadata_url_insecure", id="http"),
        pytest.param({"metadata_url": "IDP/nothing-here"}, 502, "metadata_unreachable", id="answers-404"),
    ],
)
def test_put_refuses_metadata_that_cannot_configure_sign_in_with_a_clear_code(
    acme: World, saml_idp: SamlIdp, body: dict[str, str], status: int, code: str
) -> None:
    if "metadata_url" in body:
        body = {"metadata_url": body["metadata_url"].replace("IDP", saml_idp.base)}
    response = acme.client(acme.owner_token).put("/api/sso/", {"protocol": "saml", **body}, format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert not SsoConfig.objects.for_tenant(acme.tenant).exists()


def test_the_service_providers_metadata_is_on_the_tenant_host(acme: World, acme_saml: SsoConfig) -> None:
    response = host_client(acme.host).get("/sso/saml/acme/metadata/")
    assert response.status_code == 200
    xml = response.content.decode()
    assert 'entityID="http://acme.localhost/sso/saml/acme/metadata/"' in xml
    assert 'Location="http://acme.localhost/sso/saml/acme/acs/"' in xml
    assert 'WantAssertionsSigned="true"' in xml


def test_a_stored_configuration_whose_metadata_no_longer_parses_ends_on_a_page_not_a_500(
    acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig
) -> None:
    client = host_client(acme.host)
    acs_url, fields = idp_answer(sso_start(client))
    SsoConfig.objects.filter(pk=acme_saml.pk).update(metadata_xml="<broken/>")
    assert refusal_code(client.get("/sso/login/")) == "provider_unreachable"
    assert refusal_code(acs_post(client, acs_url, fields)) == "provider_unreachable"
    assert not signed_in(client)


# --- Signing in ------------------------------------------------------------------------------------


def test_first_sign_in_creates_the_person_with_the_default_role_and_a_session(
    acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig
) -> None:
    client = host_client(acme.host)
    redirect = sso_start(client, next_url="/chat/")
    assert redirect.startswith(saml_idp.sso_url + "?")
    assert "SAMLRequest" in parse_qs(urlsplit(redirect).query)
    done = acs_post(client, *idp_answer(redirect))
    assert done.status_code == 302 and done["Location"] == "/chat/", done.content[:500]
    user = User.objects.get(email="ada@acme.test")
    assert user.full_name == "Ada Lovelace" and not user.has_usable_password()
    assert Membership.objects.for_tenant(acme.tenant).get(user=user).role == "member"
    assert SocialAccount.objects.get(user=user).provider == acme_saml.provider_id
    assert signed_in(client)
    # The AuthnRequest the IdP received: from acme's SP, answered at acme's ACS.
    (asked,) = saml_idp.seen()["requests"]
    assert asked["issuer"] == "http://acme.localhost/sso/saml/acme/metadata/"
    assert asked["acs_url"] == "http://acme.localhost/sso/saml/acme/acs/"
    entry = AuditEntry.objects.filter(tenant_id=acme.tenant.pk, action="auth.login", changes__method="sso").get()
    assert entry.changes["method"] == "sso" and entry.changes["protocol"] == "saml"
    assert entry.changes["how"] == "created"


def test_returning_person_signs_in_as_the_same_account(acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig) -> None:
    assert sso_sign_in(host_client(acme.host)).status_code == 302
    client = host_client(acme.host)
    assert sso_sign_in(client).status_code == 302
    assert User.objects.filter(email="ada@acme.test").count() == 1
    assert signed_in(client)


def test_another_identity_provider_never_signs_in_as_the_old_ones_people(
    acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig
) -> None:
    assert sso_sign_in(host_client(acme.host)).status_code == 302
    (account,) = SocialAccount.objects.filter(provider=acme_saml.provider_id)
    same_idp = acme_saml.provider_id
    acme_saml.metadata_xml = acme_saml.metadata_xml.replace(saml_idp.entity_id, "https://other-idp.test/metadata")

    # Its NameIDs are another namespace: the old person's social account is not theirs to match.
    assert acme_saml.provider_id != same_idp and account.provider == same_idp
    acme_saml.metadata_xml = saml_idp.metadata_xml()
    assert acme_saml.provider_id == same_idp


def test_an_existing_account_is_linked_when_the_idp_says_the_email_is_verified(
    acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig
) -> None:
    saml_idp.configure(user={"email": acme.member.email, "email_verified": True})
    client = host_client(acme.host)
    assert sso_sign_in(client).status_code == 302
    assert SocialAccount.objects.get(provider=acme_saml.provider_id).user == acme.member
    assert signed_in(client)


@pytest.mark.parametrize("verified", [False, None], ids=["says-unverified", "says-nothing"])
def test_an_existing_account_is_not_linked_without_a_verified_email(
    acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig, verified: bool | None
) -> None:
    user: dict[str, Any] = {"email": acme.member.email, "email_verified": verified}
    saml_idp.configure(user=user)
    client = host_client(acme.host)
    assert refusal_code(sso_sign_in(client)) == "email_unverified"
    assert not SocialAccount.objects.filter(user=acme.member).exists()
    assert not signed_in(client)


def test_a_domain_that_is_not_allowed_is_refused(acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig) -> None:
    saml_idp.configure(user={"email": "eve@elsewhere.test"})
    client = host_client(acme.host)
    assert refusal_code(sso_sign_in(client)) == "domain_not_allowed"
    assert not User.objects.filter(email="eve@elsewhere.test").exists()
    assert not signed_in(client)
    failed = AuditEntry.objects.filter(tenant_id=acme.tenant.pk, action="auth.login_failed").latest("id")
    assert failed.changes["reason"] == "domain_not_allowed" and failed.changes["protocol"] == "saml"


def _last_audit_id() -> int:
    # The log is append-only: entries other tests committed (live servers) stay; count from here.
    last = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()
    return last or 0


def _refusals_since(world: World, after_id: int):  # noqa: ANN202
    return AuditEntry.objects.filter(tenant_id=world.tenant.pk, action="auth.login_failed", id__gt=after_id)


@pytest.mark.parametrize(
    ("misbehaviour", "detail"),
    [
        ("unsigned", "Assertion of the Response is not signed"),
        ("response_signed_only", "Assertion of the Response is not signed"),
        ("other_key", "Signature validation failed"),
        ("wrong_audience", "is not a valid audience"),
        ("expired", "expired"),
        ("unsolicited", "unknown"),  # allauth refuses it before python3-saml has a reason to give
    ],
)
def test_a_response_that_fails_verification_signs_nobody_in(
    acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig, misbehaviour: str, detail: str
) -> None:
    saml_idp.configure(misbehave=misbehaviour)
    client = host_client(acme.host)
    before = _last_audit_id()
    assert refusal_code(sso_sign_in(client)) == "sso_failed"
    assert not User.objects.filter(email="ada@acme.test").exists()
    assert not signed_in(client)
    failed = _refusals_since(acme, before).get()
    assert failed.changes["reason"] == "sso_failed" and detail in failed.changes["detail"]


def test_an_answer_to_a_request_this_session_never_made_is_refused(
    acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig
) -> None:
    saml_idp.configure(misbehave="wrong_in_response_to")
    client = host_client(acme.host)
    assert refusal_code(sso_sign_in(client)) == "sso_request_unknown"
    assert not User.objects.filter(email="ada@acme.test").exists()
    assert not signed_in(client)


def test_a_replayed_response_is_refused(acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig) -> None:
    client = host_client(acme.host)
    before = _last_audit_id()
    acs_url, fields = idp_answer(sso_start(client))
    assert acs_post(client, acs_url, fields).status_code == 302
    client.post("/logout/")
    assert not signed_in(client)
    # The same response again, in the session that asked for it, and in another browser.
    assert refusal_code(acs_post(client, acs_url, fields)) == "sso_request_unknown"
    assert not signed_in(client)
    attacker = host_client(acme.host)
    sso_start(attacker)  # a request of its own is pending: still not the one answered
    assert refusal_code(acs_post(attacker, acs_url, fields)) == "sso_request_unknown"
    assert not signed_in(attacker)
    refusals = _refusals_since(acme, before)
    assert [entry.changes["reason"] for entry in refusals] == ["sso_request_unknown"] * 2


def test_an_idp_resending_an_earlier_response_for_a_new_request_is_refused(
    acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig
) -> None:
    assert sso_sign_in(host_client(acme.host)).status_code == 302
    saml_idp.configure(misbehave="replay_last", reset=False)
    client = host_client(acme.host)
    assert refusal_code(sso_sign_in(client)) == "sso_request_unknown"
    assert not signed_in(client)


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "http://globex.localhost/", "/\\evil.example"]
)
def test_next_never_leaves_the_host(acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig, target: str) -> None:
    response = sso_sign_in(host_client(acme.host), next_url=target)
    assert response.status_code == 302 and response["Location"] == "/"


def test_one_tenants_configuration_never_signs_into_another(
    acme: World, globex: World, saml_idp: SamlIdp, idp_metadata: str, acme_saml: SsoConfig
) -> None:
    # Both tenants trust the very same IdP.
    saml_configure(globex, idp_metadata)
    acme_client, globex_client = host_client(acme.host), host_client(globex.host)
    acs_url, fields = idp_answer(sso_start(acme_client))
    sso_start(globex_client)
    # Acme's ACS is not on globex's host; globex's ACS refuses a response addressed to acme's SP.
    posted = globex_client.post(
        urlsplit(acs_url).path, urlencode(fields), content_type="application/x-www-form-urlencoded"
    )
    assert posted.status_code == 404
    assert refusal_code(acs_post(globex_client, "http://globex.localhost/sso/saml/globex/acs/", fields)) == "sso_failed"
    assert not signed_in(globex_client)
    assert acs_post(acme_client, acs_url, fields).status_code == 302
    assert not Membership.objects.for_tenant(globex.tenant).filter(user__email="ada@acme.test").exists()


def test_the_owners_test_sign_in_shows_the_attributes_and_signs_nobody_in(
    acme: World, saml_idp: SamlIdp, acme_saml: SsoConfig
) -> None:
    owner = acme.session_client(User.objects.get(pk=acme.owner.pk))  # a fresh row: others may mutate the shared one
    started = owner.get("/sso/test/")
    assert started.status_code == 302
    result = acs_post(owner, *idp_answer(started["Location"]))
    assert result.status_code == 200, result.content[:500]
    page = result.content.decode()
    assert "urn:oid:0.9.2342.19200300.100.1.3" in page and "ada@acme.test" in page
    assert not User.objects.filter(email="ada@acme.test").exists()


def test_the_settings_page_shows_what_to_register_at_the_idp_and_saves_saml(acme: World, saml_idp: SamlIdp) -> None:
    owner = acme.session_client(User.objects.get(pk=acme.owner.pk))  # a fresh row: others may mutate the shared one
    page = owner.get("/settings/sso/").content.decode()
    assert "http://acme.localhost/sso/saml/acme/metadata/" in page
    assert "http://acme.localhost/sso/saml/acme/acs/" in page
    form = {"protocol": "saml", "metadata_url": saml_idp.metadata_url, "default_role": "member"}
    assert owner.post("/settings/sso/", form).status_code == 302
    assert SsoConfig.objects.for_tenant(acme.tenant).get().protocol == "saml"
    refused = owner.post("/settings/sso/", form | {"metadata_url": "", "metadata_xml": "<x/>"})
    assert refused.status_code == 400 and "no identity provider" in refused.content.decode()


# --- In Chromium, against the live server -----------------------------------------------------------


@pytest.fixture(scope="module")
def live_world(django_db_setup: Any, django_db_blocker: Any) -> World:
    from tests.ai.factories import world_create

    with django_db_blocker.unblock():
        return world_create("Saml")


def _live_sso_remove(world: World, domain: str) -> None:
    SsoConfig.objects.for_tenant(world.tenant).delete()
    User.objects.filter(email__endswith=f"@{domain}").exclude(pk__in=[world.owner.pk, world.member.pk]).delete()


@pytest.fixture
def live_domain(live_world: World, idp_metadata: str) -> Iterator[str]:
    """The live world's SAML configuration, committed (the live server sees it), and removed after:
    other modules' tests count configurations and people."""
    domain = f"{live_world.tenant.subdomain}.test"
    committed(saml_configure, live_world, idp_metadata, allowed_domains=[domain])
    yield domain
    committed(_live_sso_remove, live_world, domain)


@pytest.mark.browser
@pytest.mark.django_db
def test_the_whole_flow_in_chromium(asgi_server: Any, live_world: World, saml_idp: SamlIdp, live_domain: str) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium-headless-shell is not installed (tests/run.sh installs it)")
    domain = live_domain
    saml_idp.configure(user={"email": f"grace@{domain}", "first_name": "Grace", "last_name": "Hopper"})
    base = asgi_server.host_url(live_world.tenant.subdomain)
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop on this thread; our ORM calls are sync
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                visited: list[str] = []
                page.on("request", lambda request: request.is_navigation_request() and visited.append(request.url))
                page.goto(f"{base}/login/?next=/account/")
                page.click("#sso-login")  # the login page's "Sign in with SSO"
                page.wait_for_url(f"{base}/account/", timeout=30_000)
                cookies = {cookie["name"]: cookie["value"] for cookie in page.context.cookies(base)}
            finally:
                browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    slug = live_world.tenant.subdomain
    assert [url.split("?")[0] for url in visited] == [
        f"{base}/login/",
        f"{base}/sso/login/",
        saml_idp.sso_url,
        f"{base}/sso/saml/{slug}/acs/",  # the IdP's form, posted by the browser
        f"{base}/sso/saml/{slug}/acs/finish/",
        f"{base}/account/",
    ]
    with httpx.Client(base_url=asgi_server.url, timeout=30) as client:
        headers = {"Host": urlsplit(base).netloc}
        me = client.get("/api/auth/user/", headers=headers, cookies={"sessionid": cookies["sessionid"]})
    assert me.status_code == 200 and me.json()["email"] == f"grace@{domain}"
