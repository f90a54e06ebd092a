"""Every route × every kind of caller → the expected status, from one table.

The keys and models are those of ``tests/security/conftest.py``: ``cheap`` is dead and falls
back to ``premium``; the logical model ``auto`` is ``[cheap, mini]``; the keys ``cheap``,
``premium`` and ``auto`` may use only that name, ``all`` every model (not admin), ``admin``
is an admin key; ``bad`` is well formed but was never issued.

A cell is the expected status, and for a served chat request ``@model``: the model that
must have served it (read from the audit record). Besides the status, every cell checks that
an error body is OpenAI-shaped, that an authenticated route left exactly one audit record
(naming the presented key, also when it was refused as expired or revoked) and a public
route none. Adding a route to the app without a row here fails
``test_every_route_has_a_row``.
"""

from __future__ import annotations

import pytest
from tests.security.conftest import FrontDoor

from wardgate.gateway.app import create_app

KEYS = ["none", "bad", "expired", "revoked", "cheap", "premium", "auto", "all", "admin"]

MATRIX = """
request               none bad expired revoked cheap premium auto     all         admin
chat:cheap            401  401 401     401     502   403     403      200@premium 200@premium
chat:cheap:stream     401  401 401     401     502   403     403      200@premium 200@premium
chat:premium          401  401 401     401     403   200     403      200         200
chat:mini             401  401 401     401     403   403     403      200         200
chat:auto             401  401 401     401     403   403     200@mini 200@premium 200@premium
chat:auto:stream      401  401 401     401     403   403     200@mini 200@premium 200@premium
chat:nope             401  401 401     401     404   404     404      404         404
models                401  401 401     401     200   200     200      200         200
models/premium        401  401 401     401     404   200     404      200         200
models/auto           401  401 401     401     404   404     200      200         200
admin:create          401  401 401     401     403   403     403      403         201
admin:list            401  401 401     401     403   403     403      403         200
admin:revoke          401  401 401     401     403   403     403      403         404
admin:rotate          401  401 401     401     403   403     403      403         404
admin:verify          401  401 401     401     403   403     403      403         200
embeddings:premium    401  401 401     401     403   200     403      200         200
messages:premium      401  401 401     401     403   200     403      200         200
responses:premium     401  401 401     401     403   200     403      200         200
watermark:detect      401  401 401     401     403   403     403      403         404
receipt-keys          200  200 200     200     200   200     200      200         200
openapi               200  200 200     200     200   200     200      200         200
healthz               200  200 200     200     200   200     200      200         200
readyz                200  200 200     200     200   200     200      200         200
metrics               200  200 200     200     200   200     200      200         200
"""

MISSING_KEY = "key_0123456789abcdef"

#: request name → (method, path, JSON body or None, audited?)
REQUESTS: dict[str, tuple[str, str, object, bool]] = {
    "admin:create": ("POST", "/admin/keys", {"owner": "matrix"}, True),
    "admin:list": ("GET", "/admin/keys", None, True),
    "admin:revoke": ("POST", f"/admin/keys/{MISSING_KEY}/revoke", None, True),
    "admin:rotate": ("POST", f"/admin/keys/{MISSING_KEY}/rotate", None, True),
    "admin:verify": ("GET", "/admin/audit/verify", None, True),
    "models": ("GET", "/v1/models", None, True),
    "models/premium": ("GET", "/v1/models/premium", None, True),
    "models/auto": ("GET", "/v1/models/auto", None, True),
    "embeddings:premium": ("POST", "/v1/embeddings", {"model": "premium", "input": "hi"}, True),
    "messages:premium": (
        "POST",
        "/v1/messages",
        {"model": "premium", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        True,
    ),
    "responses:premium": ("POST", "/v1/responses", {"model": "premium", "input": "hello"}, True),
    "watermark:detect": (
        "POST",
        "/v1/watermark/detect",
        {"model": "mini", "text": "hello there, how are you today?"},
        True,
    ),
    "receipt-keys": ("GET", "/.well-known/wardgate/keys", None, False),
    "openapi": ("GET", "/openapi.json", None, False),
    "healthz": ("GET", "/healthz", None, False),
    "readyz": ("GET", "/readyz", None, False),
    "metrics": ("GET", "/metrics", None, False),
}


def _request(name: str) -> tuple[str, str, object, bool]:
    if name.startswith("chat:"):
        _, model, *stream = name.split(":")
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
        if stream:
            body["stream"] = True
        return "POST", "/v1/chat/completions", body, True
    return REQUESTS[name]


def _cells() -> list[tuple[str, str, str]]:
    header, *rows = [line.split() for line in MATRIX.strip().splitlines()]
    assert header[1:] == KEYS
    cells = []
    for row in rows:
        assert len(row) == len(header), row
        cells.extend((row[0], key, expected) for key, expected in zip(KEYS, row[1:], strict=True))
    return cells


CELLS = _cells()


def test_every_route_has_a_row(front_door: FrontDoor) -> None:
    app = create_app(front_door.gateway.config, gateway=front_door.gateway)
    # The console authenticates by session cookie, not bearer key, and answers in HTML: its
    # routes have their own table in tests/console/test_console_auth.py.
    declared = {
        (method, route.path)
        for route in app.routes
        for method in (route.methods or ()) - {"HEAD"}
        if not route.path.startswith("/console")
    }
    covered = set()
    for name in {request for request, _, _ in CELLS}:
        method, path, _, _ = _request(name)
        path = path.replace(MISSING_KEY, "{key_id}")
        path = "/v1/models/{model_id:path}" if path.startswith("/v1/models/") else path
        covered.add((method, path))
    assert declared == covered


@pytest.mark.parametrize(("request_name", "key", "expected"), CELLS)
def test_authorisation(front_door: FrontDoor, request_name: str, key: str, expected: str) -> None:
    method, path, body, audited = _request(request_name)
    status, _, served_by = expected.partition("@")
    before = len(front_door.audit_rows())
    response = front_door.call(method, path, None if key == "none" else key, json=body)

    assert response.status_code == int(status), response.text
    if response.status_code >= 400 and path == "/v1/messages":  # the Anthropic error shape
        body_json = response.json()
        assert body_json["type"] == "error"
        assert set(body_json["error"]) >= {"type", "message"}
    elif response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]
    if body is not None and body.get("stream") and response.status_code == 200:  # type: ignore[union-attr]
        assert response.text.rstrip().endswith("data: [DONE]")

    rows = front_door.audit_rows()[before:]
    if not audited:
        assert rows == []
        return
    assert len(rows) == 1, rows
    record = rows[0]
    assert record["status"] == response.status_code
    presented = front_door.key_ids.get(key)  # None for no key and for a key never issued
    assert record["key_id"] == presented
    if served_by:
        assert record["backend_used"] == served_by
    elif path == "/v1/chat/completions" and response.status_code == 200:
        assert record["backend_used"] == body["model"]  # type: ignore[index]
