"""A tiny OpenID Connect provider on 127.0.0.1 for the sign-in tests (built on :class:`fakeservers.FakeServer`).

It serves what Streamlit's ``st.login`` (Authlib) asks of a real provider: the discovery document, an
authorisation endpoint, a token endpoint that returns an RS256-signed ID token carrying the request's nonce,
and the signing key set. Nobody types a password at it: ``/authorize`` signs in as :attr:`signed_in_as` at
once and redirects back with a one-time code, as a provider does for a user who already has a session.

Usage::

    with FakeOidcProvider(client_id="medrag", client_secret="s3cret") as provider:
        provider.signed_in_as = Person("teacher@school.example", "Ms Teacher")
        ...  # secrets.toml: server_metadata_url = provider.metadata_url
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey

from fakeservers import FakeServer, RecordedRequest, Reply


@dataclass(frozen=True)
class Person:
    """Who the provider says signed in."""

    email: str
    name: str


class FakeOidcProvider:
    """Discovery, authorise, token and JWKS endpoints; every code and token it issued is recorded."""

    def __init__(self, *, client_id: str, client_secret: str, lifetime_s: float = 300.0) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.signed_in_as = Person("teacher@school.example", "Ms Teacher")
        self._key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
        #: code -> (person, nonce, client_id) of authorisations not yet exchanged
        self._codes: dict[str, tuple[Person, str | None, str]] = {}
        self.issued_to: list[str] = []
        self.server = FakeServer({
            "GET /.well-known/openid-configuration": self._metadata,
            "GET /authorize": self._authorize,
            "POST /token": self._token,
            "GET /jwks": self._jwks,
        }, max_requests=500, lifetime_s=lifetime_s)

    @property
    def issuer(self) -> str:
        """The provider's issuer URL (its root)."""
        return self.server.url

    @property
    def metadata_url(self) -> str:
        """What ``server_metadata_url`` in ``[auth]`` of secrets.toml names."""
        return f"{self.server.url}/.well-known/openid-configuration"

    def __enter__(self) -> FakeOidcProvider:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def _metadata(self, _request: RecordedRequest) -> Reply:
        root = self.server.url
        return Reply(json={
            "issuer": root,
            "authorization_endpoint": f"{root}/authorize",
            "token_endpoint": f"{root}/token",
            "jwks_uri": f"{root}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        })

    def _authorize(self, request: RecordedRequest) -> Reply:
        query = {k: v[0] for k, v in request.query.items()}
        if query.get("client_id") != self.client_id or "redirect_uri" not in query:
            return Reply(status=400, text="unknown client or no redirect_uri")
        code = secrets.token_urlsafe(16)
        self._codes[code] = (self.signed_in_as, query.get("nonce"), query["client_id"])
        back = {"code": code, "state": query.get("state", "")}
        return Reply(status=302, text="", headers={"Location": f"{query['redirect_uri']}?{urlencode(back)}"})

    def _token(self, request: RecordedRequest) -> Reply:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8")).items()}
        if not self._client_authenticated(request, form):
            return Reply(status=401, json={"error": "invalid_client"})
        entry = self._codes.pop(form.get("code", ""), None)
        if entry is None:
            return Reply(status=400, json={"error": "invalid_grant"})
        person, nonce, client_id = entry
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": person.email, "aud": client_id, "iat": now, "exp": now + 600,
            "email": person.email, "email_verified": True, "name": person.name,
        }
        if nonce:
            claims["nonce"] = nonce
        id_token = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self._key)
        self.issued_to.append(person.email)
        return Reply(json={"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 600,
                           "id_token": id_token, "scope": "openid email profile"})

    def _client_authenticated(self, request: RecordedRequest, form: dict[str, str]) -> bool:
        import base64

        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            from urllib.parse import unquote

            user, _, password = base64.b64decode(basic[6:]).decode("utf-8").partition(":")
            return unquote(user) == self.client_id and unquote(password) == self.client_secret
        return form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret

    def _jwks(self, _request: RecordedRequest) -> Reply:
        return Reply(json={"keys": [self._key.as_dict(private=False)]})
