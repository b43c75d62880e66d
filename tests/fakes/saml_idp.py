"""A real SAML 2.0 identity provider (pysaml2's IdP, signing with xmlsec1), a process of its own on 127.0.0.1."""

from __future__ import annotations

import argparse
import base64
import datetime
import html
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import httpx

# What the IdP can be told to do wrong (POST /control {"misbehave": ...}); "" answers correctly.
MISBEHAVIOURS = (
    "",
    "unsigned",  # neither the response nor the assertion is signed
    "response_signed_only",  # the response is signed, the assertion inside it is not
    "other_key",  # signed, by a key that is not the one in the metadata
    "wrong_audience",  # the assertion is meant for another service provider
    "expired",  # the assertion's validity ended ten minutes ago
    "wrong_in_response_to",  # an answer to a request this SP never made
    "unsolicited",  # IdP-initiated: no InResponseTo at all
    "replay_last",  # sends the previous response again instead of a new one
)
DEFAULT_USER = {"email": "ada@acme.test", "first_name": "Ada", "last_name": "Lovelace", "email_verified": True}
LIFETIME_MINUTES = 5
# SAML attribute names as the common IdPs send them (URI name format, the eduPerson/X.500 OIDs).
ATTRIBUTE_OIDS = {
    "email": "urn:oid:0.9.2342.19200300.100.1.3",
    "first_name": "urn:oid:2.5.4.42",
    "last_name": "urn:oid:2.5.4.4",
}
EMAIL_VERIFIED = "http://schemas.auth0.com/email_verified"


def xmlsec_binary() -> str:
    path = shutil.which("xmlsec1")
    if path is None:
        raise RuntimeError("xmlsec1 is not installed (Debian package xmlsec1; tests/run.sh installs it)")
    return path


def key_pair_write(directory: Path, name: str, common_name: str) -> tuple[Path, Path]:
    """A fresh RSA key and its self-signed certificate, as PEM files (xmlsec1 reads files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@dataclass
class IdpState:
    """What the control endpoint sets, and what the IdP saw last."""

    user: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_USER))
    misbehave: str = ""
    last_response: str = ""  # the base64 SAMLResponse last sent
    requests: list[dict[str, Any]] = field(default_factory=list)  # parsed AuthnRequests, newest last


class SamlIdpServer:
    """The IdP itself: pysaml2 Server objects (one per signing key/lifetime) and the HTTP endpoints."""

    def __init__(self, *, port: int, workdir: Path) -> None:
        from saml2 import BINDING_HTTP_REDIRECT
        from saml2.config import IdPConfig
        from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_EMAILADDRESS
        from saml2.server import Server

        self.base = f"http://127.0.0.1:{port}"
        self.entity_id = f"{self.base}/metadata"
        self.sso_url = f"{self.base}/sso/redirect"
        self.state = IdpState()
        self.lock = threading.Lock()
        key, cert = key_pair_write(workdir, "idp", "Strata test IdP")
        other_key, other_cert = key_pair_write(workdir, "other", "Strata test IdP")

        def server(key_file: Path, cert_file: Path, lifetime_minutes: int) -> Server:
            config = IdPConfig()
            config.load(
                {
                    "entityid": self.entity_id,
                    "xmlsec_binary": xmlsec_binary(),
                    "key_file": str(key_file),
                    "cert_file": str(cert_file),
                    "metadata": {},
                    "service": {
                        "idp": {
                            "name": "Strata test IdP",
                            "endpoints": {"single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)]},
                            "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                            "want_authn_requests_signed": False,
                            "policy": {
                                "default": {
                                    "lifetime": {"minutes": lifetime_minutes},
                                    "name_form": NAME_FORMAT_URI,
                                }
                            },
                        }
                    },
                }
            )
            return Server(config=config)

        self.server = server(key, cert, LIFETIME_MINUTES)
        self.other_key_server = server(other_key, other_cert, LIFETIME_MINUTES)
        self.expired_server = server(key, cert, -10)
        self.certificate_pem = cert.read_text()
        self.sp_entity_ids: set[str] = set()

    def metadata_xml(self) -> str:
        from saml2.metadata import entity_descriptor
        from saml2.validate import valid_instance

        descriptor = entity_descriptor(self.server.config)
        valid_instance(descriptor)
        return str(descriptor)

    def sp_register(self, entity_id: str, acs_url: str) -> None:
        """Knows the SP from its AuthnRequest (a real IdP reads the SP's metadata, registered by an admin)."""
        if entity_id in self.sp_entity_ids:
            return
        xml = (
            '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"'
            f' entityID="{html.escape(entity_id)}"><md:SPSSODescriptor'
            ' protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"'
            f' Location="{html.escape(acs_url)}" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>'
        )
        for server in (self.server, self.other_key_server, self.expired_server):
            server.metadata.load("inline", xml)
        self.sp_entity_ids.add(entity_id)

    def authn_request_answer(self, query: dict[str, list[str]]) -> tuple[str, str, str]:
        """(ACS URL, SAMLResponse, RelayState) for an AuthnRequest sent with the HTTP-Redirect binding."""
        from saml2 import BINDING_HTTP_REDIRECT
        from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
        from saml2.time_util import in_a_while
        from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

        parsed = self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        request = parsed.message
        relay_state = query.get("RelayState", [""])[0]
        acs_url = request.assertion_consumer_service_url
        sp_entity_id = request.issuer.text
        self.sp_register(sp_entity_id, acs_url)
        with self.lock:
            state = self.state
            state.requests.append({"id": request.id, "issuer": sp_entity_id, "acs_url": acs_url})
            misbehave, user = state.misbehave, dict(state.user)
            if misbehave == "replay_last" and state.last_response:
                return acs_url, state.last_response, relay_state
        server = {"other_key": self.other_key_server, "expired": self.expired_server}.get(misbehave, self.server)
        in_response_to = {"wrong_in_response_to": "_" + "0" * 32, "unsolicited": None}.get(misbehave, request.id)
        audience = "http://sp.elsewhere.test/metadata" if misbehave == "wrong_audience" else sp_entity_id
        lifetime = -10 if misbehave == "expired" else LIFETIME_MINUTES
        identity: dict[str, list[str]] = {
            ATTRIBUTE_OIDS[key]: [str(user[key])] for key in ATTRIBUTE_OIDS if user.get(key) is not None
        }
        if "email_verified" in user:
            identity[EMAIL_VERIFIED] = ["true" if user["email_verified"] else "false"]
        confirmation: dict[str, Any] = {"recipient": acs_url, "not_on_or_after": in_a_while(minutes=lifetime)}
        if in_response_to:
            confirmation["in_response_to"] = in_response_to
        response = server.create_authn_response(
            identity=identity,
            in_response_to=in_response_to,
            destination=acs_url,
            sp_entity_id=audience,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=user["email"]),
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            sign_assertion=misbehave not in ("unsigned", "response_signed_only"),
            sign_response=misbehave == "response_signed_only",
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
            farg={
                "assertion": {
                    "subject": {
                        "subject_confirmation": {
                            "method": "urn:oasis:names:tc:SAML:2.0:cm:bearer",
                            "subject_confirmation_data": confirmation,
                        }
                    }
                }
            },
        )
        encoded = base64.b64encode(str(response).encode()).decode()
        with self.lock:
            self.state.last_response = encoded
        return acs_url, encoded, relay_state

    def serve(self, port: int) -> ThreadingHTTPServer:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def _send(self, status: int, body: str, content_type: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/metadata":
                    self._send(200, idp.metadata_xml(), "application/samlmetadata+xml")
                elif url.path == "/sso/redirect":
                    try:
                        acs_url, saml_response, relay_state = idp.authn_request_answer(parse_qs(url.query))
                    except Exception as exc:  # the IdP's error page, as a real one shows
                        traceback.print_exc()
                        self._send(400, f"bad AuthnRequest: {exc}", "text/plain")
                        return
                    self._send(200, post_form(acs_url, saml_response, relay_state), "text/html; charset=utf-8")
                elif url.path == "/control":
                    with idp.lock:
                        state = idp.state
                        body = {"user": state.user, "misbehave": state.misbehave, "requests": state.requests}
                        body["last_response"] = state.last_response
                        body["certificate"] = idp.certificate_pem
                    self._send(200, json.dumps(body), "application/json")
                else:
                    self._send(404, "not found", "text/plain")

            def do_POST(self) -> None:
                if urlsplit(self.path).path != "/control":
                    self._send(404, "not found", "text/plain")
                    return
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if payload.get("misbehave", "") not in MISBEHAVIOURS:
                    self._send(400, f"misbehave must be one of {MISBEHAVIOURS}", "text/plain")
                    return
                with idp.lock:
                    if payload.get("reset"):
                        idp.state = IdpState()
                    if "user" in payload:
                        idp.state.user = {**DEFAULT_USER, **payload["user"]}
                    if "misbehave" in payload:
                        idp.state.misbehave = payload["misbehave"]
                self._send(204, "", "text/plain")

        return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def post_form(acs_url: str, saml_response: str, relay_state: str) -> str:
    """The HTTP-POST binding: a form the browser submits to the SP's ACS by itself."""
    fields = f'<input type="hidden" name="SAMLResponse" value="{html.escape(saml_response)}">'
    if relay_state:
        fields += f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}">'
    return (
        '<!doctype html><html><body onload="document.forms[0].submit()">'
        f'<form method="post" action="{html.escape(acs_url)}">{fields}'
        '<noscript><button type="submit">Continue</button></noscript></form></body></html>'
    )


def form_fields(page: str) -> tuple[str, dict[str, str]]:
    """(action, {name: value}) of the auto-submitting form the IdP answered with (what a browser would post)."""
    import re

    action = re.search(r'<form method="post" action="([^"]+)"', page)
    if action is None:
        raise AssertionError(f"no POST form in the IdP's answer: {page[:300]}")
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    return html.unescape(action.group(1)), {name: html.unescape(value) for name, value in fields.items()}


class SamlIdp:
    """Starts and stops the IdP process; tells it whom to sign in and what to do wrong."""

    def __init__(self, port: int | None = None) -> None:
        from tests.processes import free_port

        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.metadata_url = f"{self.base}/metadata"
        self.entity_id = self.metadata_url
        self.sso_url = f"{self.base}/sso/redirect"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        from tests.processes import ROOT, wait_for

        xmlsec_binary()  # a clear failure here rather than a 400 from the process later
        self._process = subprocess.Popen(
            # pysaml2 warns of cryptography's moved CFB mode at import: noise, not ours.
            [
                sys.executable,
                "-W",
                "ignore::DeprecationWarning",
                "-m",
                "tests.fakes.saml_idp",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
        )
        wait_for(self.metadata_url, timeout=30, process=self._process)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def configure(self, *, user: dict[str, Any] | None = None, misbehave: str = "", reset: bool = True) -> None:
        payload: dict[str, Any] = {"misbehave": misbehave, "reset": reset}
        if user is not None:
            payload["user"] = user
        httpx.post(f"{self.base}/control", json=payload, timeout=10).raise_for_status()

    def seen(self) -> dict[str, Any]:
        """The AuthnRequests received, the last response sent, the signing certificate."""
        return httpx.get(f"{self.base}/control", timeout=10).json()

    def metadata_xml(self) -> str:
        return httpx.get(self.metadata_url, timeout=10).text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="saml-idp-") as workdir:
        idp = SamlIdpServer(port=args.port, workdir=Path(workdir))
        httpd = idp.serve(args.port)
        try:
            httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            httpd.server_close()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    main()
