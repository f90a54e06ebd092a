"""Console sessions in Redis: log in on one gateway process, use the console on another;
expiry in Redis; revocation and log-out everywhere; an unreachable Redis fails closed.

Uses the real Redis at 127.0.0.1:6379 (skipped when none answers), each test under its own
key prefix, deleted afterwards.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis
from tests.conftest import serve_in_thread

from wardgate.config import GatewayConfig
from wardgate.console.sessions import RedisSessionStore, SessionStoreUnavailable
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(not _redis_up(), reason="no Redis at 127.0.0.1:6379")


@pytest.fixture
def prefix() -> Iterator[str]:
    value = f"wgtest:console:{secrets.token_hex(6)}:"
    yield value
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=value + "*"))
    if keys:
        client.delete(*keys)


def test_store_round_trip_expiry_and_revocation(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    store = RedisSessionStore(REDIS_URL, idle_s=0.5, max_age_s=60, prefix=prefix)
    other = RedisSessionStore(REDIS_URL, idle_s=0.5, max_age_s=60, prefix=prefix)
    token, session = store.create("key_a", "ops")
    seen = other.get(token)  # another process sees the same session, CSRF token included
    assert seen is not None and seen.key_id == "key_a" and seen.csrf == session.csrf
    [stored] = [k for k in client.scan_iter(match=prefix + "s:*")]
    assert token.encode() not in stored and token.encode() not in client.get(stored)
    assert 0 < client.pttl(stored) <= 500  # expires in Redis by itself, after the idle time
    seen.flash.append("Saved.")
    other.save(token, seen)
    assert store.get(token).flash == ["Saved."]  # type: ignore[union-attr]
    time.sleep(0.7)
    assert store.get(token) is None and client.get(stored) is None  # idle: gone

    token_b, _ = store.create("key_b", "ops")
    token_c, _ = store.create("key_b", "ops")
    other.end_for_key("key_b")
    assert store.get(token_b) is None and store.get(token_c) is None
    token_d, _ = store.create("key_d", "ops")
    other.end(token_d)
    assert store.get(token_d) is None
    assert store.get("x" * 200) is None and store.get(None) is None


def test_unreachable_redis_fails_closed() -> None:
    store = RedisSessionStore("redis://127.0.0.1:1/0", idle_s=60, max_age_s=60, prefix="x:")
    assert store.get("some-token") is None
    with pytest.raises(SessionStoreUnavailable):
        store.create("key_a", "ops")


def _config(tmp: Path, prefix: str, redis_url: str = REDIS_URL) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "database_url": f"sqlite:///{tmp / 'gw.db'}",
        "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WG_CR_NO_SECRET"},
        "guards": {"input": [], "output": []},
        "models": [],
        "redis_url": redis_url,
        "console": {"reports_dir": str(tmp), "redis_prefix": prefix},
    })  # fmt: skip


def _login(client: httpx.Client, url: str, admin: str) -> None:
    page = client.get(f"{url}/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    response = client.post(f"{url}/console/login", data={"csrf": csrf.group(1), "key": admin})
    assert response.status_code == 303, response.text


def test_log_in_on_one_process_use_the_console_on_another(tmp_path: Path, prefix: str) -> None:
    config = _config(tmp_path, prefix)
    first, second = Gateway(config), Gateway(config)  # two processes' worth of state
    _, admin = first.keys.create(owner="ops", admin=True)
    with ExitStack() as stack:
        url_a = stack.enter_context(serve_in_thread(create_app(config, gateway=first)))
        url_b = stack.enter_context(serve_in_thread(create_app(config, gateway=second)))
        client = stack.enter_context(httpx.Client())
        _login(client, url_a, admin)
        cookie = client.cookies.get("wg_console")
        assert cookie
        # The same cookie, sent to the other process: logged in, and the flash message the
        # first process left in the session is shown there.
        page = httpx.get(f"{url_b}/console/", cookies={"wg_console": cookie})
        assert page.status_code == 200 and "Logged in as ops" in page.text
        keys = httpx.get(f"{url_b}/console/keys", cookies={"wg_console": cookie})
        csrf = re.search(r'name="csrf" value="([^"]+)"', keys.text)
        assert keys.status_code == 200 and csrf is not None
        # A form on process B with the CSRF token of the session made on A is accepted…
        created = httpx.post(f"{url_b}/console/keys", cookies={"wg_console": cookie},
                             data={"csrf": csrf.group(1), "owner": "made-on-b"})
        assert created.status_code == 200 and "made-on-b" in created.text
        # … and a wrong one refused.
        forged = httpx.post(f"{url_b}/console/keys", cookies={"wg_console": cookie},
                            data={"csrf": "forged", "owner": "nope"})
        assert forged.status_code == 403
        # Logging out on B ends the session on A too.
        out = httpx.post(f"{url_b}/console/logout", cookies={"wg_console": cookie},
                         data={"csrf": csrf.group(1)})
        assert out.status_code == 303
        again = httpx.get(f"{url_a}/console/", cookies={"wg_console": cookie})
        assert again.status_code == 303 and again.headers["location"] == "/console/login"


def test_console_with_redis_down_refuses_to_log_in(tmp_path: Path, prefix: str) -> None:
    config = _config(tmp_path, prefix, redis_url="redis://127.0.0.1:1/0")
    gateway = Gateway(config)
    _, admin = gateway.keys.create(owner="ops", admin=True)
    with serve_in_thread(create_app(config, gateway=gateway)) as url, httpx.Client() as client:
        page = client.get(f"{url}/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        response = client.post(f"{url}/console/login", data={"csrf": csrf.group(1), "key": admin})
        assert response.status_code == 503 and "wg_console" not in client.cookies
        assert "session store (Redis) is unavailable" in response.text
