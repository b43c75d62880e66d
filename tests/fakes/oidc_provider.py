"""A real OpenID Connect provider on 127.0.0.1 for tests: discovery, JWKS, authorize (auto-consent),
token (authorization code + PKCE S256, single-use codes) and userinfo, signing RS256 id tokens.

It can misbehave on demand (``misbehave``): a wrong ``aud``, ``iss`` or ``nonce``, an expired
token, a signature from a key its JWKS does not hold, or accepting a replayed code."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.fakes.threaded_server import ThreadedFake


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Grant:
    """An authorization code and what the authorize request bound to it."""

    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    claims: dict[str, Any]
    used: bool = False


@dataclass
class FakeOidcState:
    clients: dict[str, str] = field(default_factory=dict)  # client_id -> secret
    grants: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    token_refusals: list[str] = field(default_factory=list)
    # The person who "signs in" at the next authorize request (auto-consent).
    person: dict[str, Any] = field(default_factory=dict)
    misbehave: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeOidcProvider(ThreadedFake):
    """``with FakeOidcProvider() as idp:``; ``idp.client_add(id, secret)``, ``idp.person = {...}``.

    Misbehaviours (``idp.misbehave``): ``wrong_aud``, ``wrong_iss``, ``wrong_nonce``, ``no_nonce``,
    ``expired``, ``bad_signature``, ``accept_replayed_code``, ``ignore_pkce``.
    """

    name = "fake-oidc"
    poll_interval = 0.1
    kid = "fake-key-1"

    def __init__(self) -> None:
        self.state = FakeOidcState()
        self._key = _rsa_key()
        self._stranger_key = _rsa_key()  # signs "bad_signature" tokens under the published kid

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_add(self, client_id: str, secret: str) -> None:
        self.state.clients[client_id] = secret

    def reset(self) -> None:
        clients = dict(self.state.clients)
        self.state = FakeOidcState(clients=clients)

    @property
    def person(self) -> dict[str, Any]:
        return self.state.person

    @person.setter
    def person(self, claims: dict[str, Any]) -> None:
        self.state.person = dict(claims)

    @property
    def misbehave(self) -> set[str]:
        return self.state.misbehave

    def discovery(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email"],
        }

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def id_token(self, *, grant: Grant) -> str:
        now = int(time.time())
        bad = self.state.misbehave
        claims: dict[str, Any] = {
            **grant.claims,
            "iss": "http://evil.example" if "wrong_iss" in bad else self.issuer,
            "aud": "someone-else" if "wrong_aud" in bad else grant.client_id,
            "iat": now - (7200 if "expired" in bad else 0),
            "exp": now - 3600 if "expired" in bad else now + 300,
        }
        if grant.nonce and "no_nonce" not in bad:
            claims["nonce"] = "not-the-nonce" if "wrong_nonce" in bad else grant.nonce
        key = self._stranger_key if "bad_signature" in bad else self._key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    def _server_make(self) -> ThreadingHTTPServer:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif url.path == "/jwks":
                    self._json(200, provider.jwks())
                elif url.path == "/authorize":
                    self._authorize(query)
                elif url.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    claims = provider.state.access_tokens.get(token)
                    if claims is None:
                        self._json(401, {"error": "invalid_token"})
                    else:
                        self._json(200, claims)
                else:
                    self._json(404, {"error": "not_found"})

            def _authorize(self, query: dict[str, str]) -> None:
                state = provider.state
                state.authorize_requests.append(query)
                redirect_uri = query.get("redirect_uri", "")
                if query.get("client_id") not in state.clients or not redirect_uri:
                    self._json(400, {"error": "invalid_client"})
                    return
                if query.get("response_type") != "code" or "openid" not in query.get("scope", "").split():
                    self._json(400, {"error": "invalid_request"})
                    return
                code = secrets.token_urlsafe(24)
                with state.lock:
                    state.grants[code] = Grant(
                        client_id=query["client_id"],
                        redirect_uri=redirect_uri,
                        nonce=query.get("nonce"),
                        code_challenge=query.get("code_challenge"),
                        code_challenge_method=query.get("code_challenge_method"),
                        claims=dict(state.person),
                    )
                params = {"code": code}
                if "state" in query:
                    params["state"] = query["state"]
                separator = "&" if "?" in redirect_uri else "?"
                self.send_response(302)
                self.send_header("Location", f"{redirect_uri}{separator}{urlencode(params)}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = {name: values[0] for name, values in parse_qs(self.rfile.read(length).decode()).items()}
                if url.path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                provider.state.token_requests.append(form)
                refusal = self._token_refusal(form)
                if refusal:
                    provider.state.token_refusals.append(refusal)
                    self._json(400, {"error": "invalid_grant", "error_description": refusal})
                    return
                grant = provider.state.grants[form["code"]]
                access_token = secrets.token_urlsafe(24)
                provider.state.access_tokens[access_token] = dict(grant.claims)
                self._json(
                    200,
                    {
                        "access_token": access_token,
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "id_token": provider.id_token(grant=grant),
                    },
                    {"Cache-Control": "no-store"},
                )

            def _client_credentials(self, form: dict[str, str]) -> tuple[str | None, str | None]:
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
                    return client_id, secret
                return form.get("client_id"), form.get("client_secret")

            def _token_refusal(self, form: dict[str, str]) -> str | None:
                state = provider.state
                client_id, secret = self._client_credentials(form)
                if client_id not in state.clients or state.clients[client_id] != secret:
                    return "client authentication failed"
                if form.get("grant_type") != "authorization_code":
                    return "unsupported grant type"
                with state.lock:
                    grant = state.grants.get(form.get("code", ""))
                    if grant is None:
                        return "unknown code"
                    if grant.used and "accept_replayed_code" not in state.misbehave:
                        return "code already used"
                    grant.used = True
                if grant.client_id != client_id:
                    return "code issued to another client"
                if grant.redirect_uri != form.get("redirect_uri"):
                    return "redirect_uri differs from the authorize request's"
                if grant.code_challenge and "ignore_pkce" not in state.misbehave:
                    verifier = form.get("code_verifier")
                    if not verifier:
                        return "code_verifier missing"
                    digest = hashlib.sha256(verifier.encode()).digest()
                    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.code_challenge:
                        return "code_verifier does not match the code_challenge"
                return None

        return ThreadingHTTPServer(("127.0.0.1", 0), Handler)
