"""Two real gateway processes sharing PostgreSQL and Redis: one rate limit, one audit chain,
and a revocation made through one process honoured by the other."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml
from tests.conftest import free_port
from tests.fakes import FakeOpenAI, run_server

from wardgate.config import load_config
from wardgate.store.audit import verify_chain
from wardgate.store.db import create_engine_for, upgrade_database
from wardgate.store.keys import KeyStore
from wardgate.store.secret import load_or_create_secret
from wardgate.store.tables import audit_log

pytestmark = pytest.mark.slow


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def test_two_gateways_share_limits_audit_and_revocation(tmp_path: Path, pg_database: str) -> None:
    pg_url = pg_database  # the public schema of the session database
    fake = FakeOpenAI(api_key="sk-up")
    with run_server(fake.app) as upstream:
        ports = [free_port(), free_port()]
        base = {
            "database_url": pg_url,
            "redis_url": "redis://127.0.0.1:6379/0",
            "auth": {
                "secret_file": str(tmp_path / "secret"),
                "key_cache_ttl_s": 1.0,
                "secret_env": "WG_MP_NO_SECRET",
            },
            "server": {"log_level": "warning"},
            "models": [
                {
                    "name": "fast",
                    "backend": "openai",
                    "base_url": f"{upstream}/v1",
                    "api_key_env": "WG_MP_UPSTREAM_KEY",
                    "retries": 0,
                }
            ],
        }
        configs = []
        for port in ports:
            path = tmp_path / f"gw{port}.yaml"
            path.write_text(yaml.safe_dump({**base, "server": {**base["server"], "port": port}}))
            configs.append(path)
        config = load_config(configs[0])
        upgrade_database(pg_url)
        engine = create_engine_for(pg_url)
        store = KeyStore(engine, load_or_create_secret(config.auth))
        limited_id, limited = store.create(owner="shared-limit", rpm=10)
        _, admin = store.create(owner="ops", admin=True)
        victim, victim_raw = store.create(owner="victim")

        env = {**os.environ, "WG_MP_UPSTREAM_KEY": "sk-up"}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "wardgate.cli.main", "serve", "--config", str(c)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for c in configs
        ]
        try:
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            for url, proc in zip(urls, procs, strict=True):
                _wait_ready(url, proc)
            body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}

            statuses = []
            for i in range(24):
                r = httpx.post(
                    urls[i % 2] + "/v1/chat/completions",
                    json=body,
                    timeout=10,
                    headers={"authorization": f"Bearer {limited}"},
                )
                statuses.append(r.status_code)
            ok = statuses.count(200)
            # One bucket of 10/minute shared by both processes (a per-process limit would give 20).
            assert 10 <= ok <= 11, statuses
            assert statuses.count(429) == 24 - ok
            assert {200, 429} == set(statuses)
            served_by_each = [statuses[0::2].count(200), statuses[1::2].count(200)]
            assert all(n >= 4 for n in served_by_each)  # both processes really served

            # Revoke through process A's admin API; process B refuses within its cache TTL.
            assert (
                httpx.post(
                    urls[1] + "/v1/chat/completions",
                    json=body,
                    timeout=10,
                    headers={"authorization": f"Bearer {victim_raw}"},
                ).status_code
                == 200
            )
            revoke = httpx.post(
                urls[0] + f"/admin/keys/{victim.id}/revoke",
                headers={"authorization": f"Bearer {admin}"},
            )
            assert revoke.status_code == 200
            time.sleep(1.2)
            after = httpx.post(
                urls[1] + "/v1/chat/completions",
                json=body,
                timeout=10,
                headers={"authorization": f"Bearer {victim_raw}"},
            )
            assert after.status_code == 401 and after.json()["error"]["code"] == "key_revoked"
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
        for proc in procs:
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            assert limited not in stderr and victim_raw not in stderr

        # Clean shutdown flushed everything; both processes appended to one intact chain.
        report = verify_chain(engine)
        assert report.ok, report
        # 24 limited chat requests, 2 by the victim, and the admin API's revoke.
        assert report.checked == 24 + 2 + 1
        with engine.connect() as conn:
            keys = conn.execute(sa.select(audit_log.c.key_id).distinct()).scalars().all()
        assert limited_id.id in keys
        engine.dispose()
