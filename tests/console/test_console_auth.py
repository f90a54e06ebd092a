"""Every console route without a session: refused (bearer keys count for nothing here), and
no form is read before the session is checked."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import serve_in_thread

from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway

#: (method, path) → status without a session. GET pages redirect to the log-in page; forms
#: are refused; the log-in form without its CSRF cookie is refused; static files are public.
EXPECTED = {
    ("GET", "/console/login"): 200,
    ("POST", "/console/login"): 403,
    ("POST", "/console/logout"): 401,
    ("GET", "/console/"): 303,
    ("GET", "/console/keys"): 303,
    ("POST", "/console/keys"): 401,
    ("GET", "/console/keys/{key_id}/usage"): 303,
    ("POST", "/console/keys/{key_id}/{action}"): 401,
    ("GET", "/console/audit"): 303,
    ("GET", "/console/audit/export"): 303,
    ("GET", "/console/audit/chain"): 303,
    ("GET", "/console/alerts"): 303,
    ("POST", "/console/alerts/unblock"): 401,
    ("GET", "/console/alerts/{seq:int}"): 303,
    ("GET", "/console/models"): 303,
    ("GET", "/console/reports/{name}"): 303,
    ("GET", "/console/static/{name}"): 200,
    ("GET", "/console"): 308,
}
FILL = {
    "{key_id}": "key_0123456789abcdef",
    "{action}": "revoke",
    "{seq:int}": "1",
    "{name}": "console.css",
}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Gateway, str]]:
    tmp = tmp_path_factory.mktemp("console-auth")
    config = GatewayConfig.model_validate(
        {
            "database_url": f"sqlite:///{tmp / 'gw.db'}",
            "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WG_CA_NO_SECRET"},
            "guards": {"input": [], "output": []},
            "models": [],
            "console": {"reports_dir": str(tmp)},
        }
    )
    gateway = Gateway(config)
    _, admin = gateway.keys.create(owner="ops", admin=True)
    with serve_in_thread(create_app(config, gateway=gateway)) as url:
        yield url, gateway, admin


def test_every_console_route_is_in_the_table(running: tuple[str, Gateway, str]) -> None:
    _, gateway, _ = running
    app = create_app(gateway.config, gateway=gateway)
    declared = {
        (method, route.path)
        for route in app.routes
        if route.path.startswith("/console")
        for method in (route.methods or ()) - {"HEAD"}
    }
    assert declared == set(EXPECTED)


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_without_a_session_even_an_admin_bearer_key_gets_nothing(
    running: tuple[str, Gateway, str], method: str, path: str
) -> None:
    url, _, admin = running
    for placeholder, value in FILL.items():
        path = path.replace(placeholder, value)
    response = httpx.request(
        method,
        url + path,
        headers={"authorization": f"Bearer {admin}"},
        data={"owner": "x", "csrf": "x"} if method == "POST" else None,
    )
    assert response.status_code == EXPECTED[(method, _template(path))]
    if response.status_code == 303:
        assert response.headers["location"] == "/console/login"
    if response.status_code in (200, 303, 401, 403):
        assert "script-src 'self'" in response.headers["content-security-policy"]


def _template(path: str) -> tuple[str, str] | str:
    for method, template in EXPECTED:
        pattern = template
        for placeholder, value in FILL.items():
            pattern = pattern.replace(placeholder, value)
        if pattern == path:
            return template
    return path


def test_a_form_is_not_read_before_the_session(running: tuple[str, Gateway, str]) -> None:
    url, _, _ = running
    big = b"owner=" + b"x" * 2_000_000  # far past console.max_form_bytes
    response = httpx.post(
        url + "/console/keys",
        content=big,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 401  # the session, not the size, decided
