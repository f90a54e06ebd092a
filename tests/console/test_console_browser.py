"""The admin console in a real browser: Playwright driving the Debian chromium.

Log-in, create a key (shown once, works against the API) and revoke it, search the audit log,
open an alert's evidence, a forged form rejected for its CSRF token, and an XSS attempt
through a logged ``user`` field rendered as inert text. Screenshots of each step go to
``build/test-artefacts/console/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.conftest import serve_in_thread
from tests.fakes import FakeOpenAI, run_server

from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway

CHROMIUM = os.environ.get("WARDGATE_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artefacts" / "console"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'

sync_api = pytest.importorskip("playwright.sync_api")


@dataclass
class Env:
    url: str
    gateway: Gateway
    admin: str
    user: str

    def chat(self, key: str, **body: object) -> httpx.Response:
        payload = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **body}
        return httpx.post(
            f"{self.url}/v1/chat/completions",
            json=payload,
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )

    def settle(self) -> None:
        self.gateway.monitor.drain()
        self.gateway.audit.flush()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    tmp = tmp_path_factory.mktemp("console")
    fake = FakeOpenAI(api_key="sk-console")
    mp = pytest.MonkeyPatch()
    mp.setenv("WG_CONSOLE_UPSTREAM", "sk-console")
    with run_server(fake.app) as upstream:
        config = GatewayConfig.model_validate(
            {
                "database_url": f"sqlite:///{tmp / 'gw.db'}",
                "auth": {
                    "secret_file": str(tmp / "secret"),
                    "secret_env": "WG_CONSOLE_NO_SECRET",
                    "key_cache_ttl_s": 0,
                },
                "guards": {"input": [], "output": []},
                "models": [
                    {
                        "name": "echo",
                        "backend": "openai",
                        "base_url": f"{upstream}/v1",
                        "api_key_env": "WG_CONSOLE_UPSTREAM",
                        "retries": 0,
                        "tags": {"deployment": "on_prem"},
                    }
                ],
                "monitor": {"rules": {"model_enumeration": {"threshold": 3}}},
                "console": {"reports_dir": str(tmp / "reports")},
            }
        )
        gateway = Gateway(config)
        _, admin = gateway.keys.create(owner="ops", admin=True)
        _, user = gateway.keys.create(owner="app")
        with serve_in_thread(create_app(config, gateway=gateway)) as url:
            yield Env(url, gateway, admin, user)
    mp.undo()


@pytest.fixture(scope="module")
def browser(env: Env) -> Iterator[object]:
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, env: Env):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.csp_errors = errors
    yield page
    context.close()


def log_in(page, env: Env, key: str | None = None) -> None:  # type: ignore[no-untyped-def]
    page.goto(env.url + "/console/")
    assert page.url.endswith("/console/login")
    page.fill("input[name=key]", key or env.admin)
    page.click("button[type=submit]")
    page.wait_for_url(env.url + "/console/")


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def test_log_in_sets_a_strict_session_cookie_and_logout_ends_it(page, env: Env) -> None:
    page.goto(env.url + "/console/login")
    page.fill("input[name=key]", env.user)  # not an admin key
    page.click("button[type=submit]")
    assert "not an active admin key" in page.content()
    shot(page, "01-login-refused")
    log_in(page, env)
    assert "Logged in as ops" in page.text_content(".flash")
    cookie = next(c for c in page.context.cookies() if c["name"] == "wg_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    shot(page, "02-overview")
    page.click("header .logout button")
    page.wait_for_url(env.url + "/console/login")
    page.goto(env.url + "/console/keys")
    assert page.url.endswith("/console/login")  # the old session is gone


def test_create_a_key_shown_once_then_revoke_it(page, env: Env) -> None:
    log_in(page, env)
    page.goto(env.url + "/console/keys")
    page.fill("#create-key input[name=owner]", "bob")
    page.fill("#create-key input[name=rpm]", "60")
    page.click("#create-key button[type=submit]")
    raw = page.text_content("#raw-key").strip()
    assert raw.startswith("wg-")
    shot(page, "03-key-created")
    assert env.chat(raw).status_code == 200
    page.goto(env.url + "/console/keys")
    assert raw not in page.content()  # listings show the prefix only
    row = page.locator("#keys tr", has_text="bob")
    key_id = row.get_attribute("id")
    page.on("dialog", lambda d: d.accept())
    row.locator("button.danger").click()
    page.wait_for_load_state()
    assert f"Revoked {key_id}" in page.text_content(".flash")
    assert "revoked" in page.locator(f"tr#{key_id} td.status").text_content()
    shot(page, "04-key-revoked")
    refused = env.chat(raw)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"
    env.settle()
    page.goto(env.url + "/console/audit?kind=console")
    actions = page.text_content("#audit-rows")
    assert "console" in actions and env.gateway.keys.get(key_id) is not None


def test_search_the_audit_log_and_verify_the_chain(page, env: Env) -> None:
    assert env.chat(env.user, user="carol-42").status_code == 200
    assert env.chat(env.user, user="dave-7").status_code == 200
    env.settle()
    log_in(page, env)
    page.goto(env.url + "/console/audit")
    page.fill("#audit-search input[name=user]", "carol-42")
    page.click("#audit-search button[type=submit]")
    page.wait_for_load_state()
    cells = page.locator("#audit-rows td.user").all_text_contents()
    assert cells == ["carol-42"]
    shot(page, "05-audit-search")
    page.click("text=Verify the chain")
    assert page.text_content("#chain-status").startswith("Verified: the chain is intact")


def test_view_an_alert_with_its_evidence(page, env: Env) -> None:
    for name in ("gpt-4o", "claude-3", "mistral-large"):
        assert env.chat(env.user, model=name).status_code == 404
    env.settle()
    log_in(page, env)
    page.goto(env.url + "/console/alerts")
    page.locator("#alerts tr", has_text="model_enumeration").first.locator("a").click()
    assert "model_enumeration" in page.text_content("h1")
    evidence = page.text_content("#evidence")
    assert '"distinct": 3' in evidence
    shot(page, "06-alert")


def test_a_forged_form_is_rejected_for_its_csrf_token(page, env: Env) -> None:
    log_in(page, env)
    page.goto(env.url + "/console/keys")
    page.evaluate("""() => document.querySelectorAll('#create-key input[name=csrf]')
                          .forEach(i => { i.value = 'forged'; })""")
    page.fill("#create-key input[name=owner]", "mallory")
    page.click("#create-key button[type=submit]")
    page.wait_for_load_state()
    assert "CSRF token is missing or wrong" in page.content()
    shot(page, "07-csrf-rejected")
    assert all(k.owner != "mallory" for k in env.gateway.keys.list(include_revoked=True))
    # Without the session cookie (what a cross-site form gets under SameSite=Strict) too.
    anonymous = httpx.post(env.url + "/console/keys", data={"owner": "mallory", "csrf": "x"})
    assert anonymous.status_code == 401


def test_xss_through_a_logged_user_field_renders_inert(page, env: Env) -> None:
    assert env.chat(env.user, user=XSS).status_code == 200
    env.settle()
    log_in(page, env)
    page.goto(env.url + "/console/audit?key_id=" + env.gateway.keys.list()[1].id)
    cell = page.locator("#audit-rows td.user", has_text="onerror").first
    assert cell.text_content() == XSS  # shown as text
    assert cell.locator("img, script").count() == 0  # not as markup
    assert page.evaluate("() => window.__xss") is None
    shot(page, "08-xss-inert")
    csp = httpx.get(env.url + "/console/login").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
