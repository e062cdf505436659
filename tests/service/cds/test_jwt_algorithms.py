"""Every JWS algorithm the CDS Hooks settings accept by default verifies with an ordinary JWK (no ``alg``),
inline or from the issuer's JWK Set URL, and a token whose algorithm does not suit its key is refused (401).

The verifier runs on its own (no models), with its replay store the real audit database on SQLite and the
JWK Set served over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.audit import AuditLog
from service.cds.security import InvalidJwtError, JwtVerifier
from service.cds.settings import CdsSettings
from service.errors import UnauthorizedError

ISSUER = "https://ehr.example.org"
AUD = "https://lenrisk.example.org/cds-services/lenalidomide-tolerance"

_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@pytest.fixture(scope="module")
def private_keys():
    """One private key per default algorithm: RSA for RS*/PS*, the algorithm's own curve for ES*."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        alg: ec.generate_private_key(_CURVES[alg]()) if alg in _CURVES else rsa_key
        for alg in CdsSettings().algorithms
    }


def _jwk(private_key, kid: str, **extra) -> dict:
    """The public JWK of ``private_key`` as an EHR publishes it: kty, key material, kid; no alg."""
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else None
    algorithm = algorithm or jwt.algorithms.ECAlgorithm
    return {**json.loads(algorithm.to_jwk(private_key.public_key())), "kid": kid, "use": "sig", **extra}


def _token(private_key, alg: str, kid: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUD, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, private_key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


@pytest.fixture(scope="module")
def jwks_server():
    """A JWK Set URL on 127.0.0.1 serving whatever ``server.keys`` holds."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"keys": server.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.keys = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["inline", "url"])
def verify(request, tmp_path):
    """verify(jwks_keys, token) -> the verified client, or InvalidJwtError; keys inline or from a URL."""
    replays = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")

    def run(keys: list[dict], token: str):
        if request.param == "inline":
            issuer = {"client": "ehr-a", "jwks": {"keys": keys}}
        else:
            server = request.getfixturevalue("jwks_server")
            server.keys = keys
            issuer = {"client": "ehr-a", "jwks_url": f"http://127.0.0.1:{server.server_port}/jwks.json"}
        verifier = JwtVerifier(CdsSettings(issuers={ISSUER: issuer}))
        return verifier.verify(*verifier.inspect(f"Bearer {token}"), audience=AUD, replays=replays)

    yield run
    replays.close()


@pytest.mark.parametrize("alg", CdsSettings().algorithms)
def test_each_default_algorithm_verifies_with_a_jwk_without_alg(verify, private_keys, alg):
    key = private_keys[alg]
    assert verify([_jwk(key, "k1")], _token(key, alg, "k1")).name == "ehr-a"


def test_the_default_algorithms_cover_rsa_and_ec():
    assert {"RS256", "RS384", "ES256", "ES384"} <= set(CdsSettings().algorithms)


@pytest.mark.parametrize(
    ("key_alg", "token_alg"),
    [("RS256", "ES256"), ("ES256", "RS256"), ("ES384", "RS384"), ("ES384", "ES256"), ("ES256", "ES384")],
)
def test_a_token_whose_alg_does_not_suit_the_key_is_refused(verify, private_keys, key_alg, token_alg):
    """The kid names a key of another type (or curve); the token is signed by a key fit for its alg."""
    token = _token(private_keys[token_alg], token_alg, "k1")
    with pytest.raises(InvalidJwtError) as refused:
        verify([_jwk(private_keys[key_alg], "k1")], token)
    assert isinstance(refused.value, UnauthorizedError)  # answered 401 by service.api.errors


def test_a_jwk_naming_its_alg_verifies_only_that_alg(verify, private_keys):
    key = private_keys["RS256"]
    assert verify([_jwk(key, "k1", alg="RS384")], _token(key, "RS384", "k1")).name == "ehr-a"
    with pytest.raises(InvalidJwtError):
        verify([_jwk(key, "k1", alg="RS256")], _token(key, "RS384", "k1"))
