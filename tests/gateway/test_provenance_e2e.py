"""Receipts (and, later, watermarks) end to end: the official openai SDK against the running
gateway on the embedded SmolLM2 model, streaming and not, verified offline from the JWKS."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from tests.conftest import serve_in_thread
from tests.gateway.test_gateway_e2e import Running, gateway_config
from typer.testing import CliRunner

from wardgate.cli.main import app
from wardgate.embedded import embedded_model_path
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.provenance.receipts import ReceiptInvalid, messages_digest, verify_receipt
from wardgate.provenance.signing_keys import keyset_from_jwks
from wardgate.store.audit import tail

MESSAGES = [{"role": "user", "content": "Name one colour."}]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("prov")
    config = gateway_config(
        tmp,
        audit={"store_prompts": "full", "flush_interval_s": 0.05},
        models=[{"name": "smol", "backend": "llamacpp", "n_ctx": 512, "max_output_tokens": 48}],
    )
    gateway = Gateway(config)
    keys = {"user": gateway.keys.create(owner="app")[1]}
    with serve_in_thread(create_app(config, gateway=gateway)) as url:
        yield Running(url, gateway, keys)


def _jwks(running: Running) -> dict:
    reply = httpx.get(running.url + "/.well-known/wardgate/keys", timeout=10)
    assert reply.status_code == 200
    return reply.json()


def _audit_receipt(running: Running, request_id: str) -> str | None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for record in tail(running.gateway.engine, 50):
            if record["request_id"] == request_id:
                return record.get("receipt")
        time.sleep(0.05)
    raise AssertionError(f"no audit record for {request_id}")


def test_jwks_is_public_and_has_the_active_key(running: Running) -> None:
    jwks = _jwks(running)
    assert [k["kid"] for k in jwks["keys"]] == [running.gateway.receipts.keys.kid]
    assert jwks["keys"][0]["alg"] == "Ed25519" and "d" not in jwks["keys"][0]


def test_non_streaming_receipt(running: Running) -> None:
    raw = running.client().chat.completions.with_raw_response.create(
        model="smol", messages=MESSAGES, max_tokens=12, temperature=0, seed=1
    )
    reply = raw.parse()
    header = raw.headers["x-wardgate-receipt"]
    assert reply.model_extra["wardgate"]["receipt"] == header
    content = reply.choices[0].message.content
    checked = verify_receipt(header, keyset_from_jwks(_jwks(running)), content=content)
    p = checked.payload
    assert p["audit_request_id"] == reply.id
    assert p["model"] == "smol" and p["backend"] == "smol"
    assert p["request_sha256"] == messages_digest([("user", "Name one colour.")])
    assert p["usage"]["completion_tokens"] == reply.usage.completion_tokens
    assert p["finish_reason"] == reply.choices[0].finish_reason
    # The digest of the embedded weights file, as loaded.
    digest = hashlib.sha256(embedded_model_path().read_bytes()).hexdigest()
    assert p["weights"] == {
        "sha256": digest,
        "check": "hashed_at_load",
        "file": p["weights"]["file"],
    }
    assert p["watermark"] is None
    assert _audit_receipt(running, reply.id) == header
    with pytest.raises(ReceiptInvalid):
        verify_receipt(header, keyset_from_jwks(_jwks(running)), content=content + "!")


def test_streaming_receipt_is_the_last_chunk_before_done(running: Running) -> None:
    stream = running.client().chat.completions.create(
        model="smol",
        messages=MESSAGES,
        max_tokens=12,
        temperature=0,
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and "wardgate" in last.model_extra
    receipt = last.model_extra["wardgate"]["receipt"]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    checked = verify_receipt(receipt, keyset_from_jwks(_jwks(running)), content=content)
    assert checked.payload["audit_request_id"] == last.id
    usage = next(c.usage for c in chunks if c.usage is not None)
    assert checked.payload["usage"]["completion_tokens"] == usage.completion_tokens
    assert _audit_receipt(running, last.id) == receipt


def test_streaming_wire_format(running: Running) -> None:
    """The raw SSE: the receipt event comes right before ``data: [DONE]``."""
    with httpx.stream(
        "POST",
        running.url + "/v1/chat/completions",
        json={"model": "smol", "messages": MESSAGES, "max_tokens": 8, "stream": True},
        headers={"authorization": f"Bearer {running.keys['user']}"},
        timeout=60,
    ) as reply:
        events = [line for line in reply.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2][6:])
    # Without include_usage the finish chunk itself carries it (choices[0] still exists).
    assert last["choices"][0]["finish_reason"] in ("stop", "length")
    assert "receipt" in last["wardgate"]
    assert all("wardgate" not in json.loads(e[6:]) for e in events[:-2])


def test_cli_verifies_a_gateway_receipt_offline(running: Running, tmp_path: Path) -> None:
    reply = running.client().chat.completions.create(
        model="smol", messages=MESSAGES, max_tokens=10, temperature=0
    )
    receipt = reply.model_extra["wardgate"]["receipt"]
    (tmp_path / "jwks.json").write_text(json.dumps(_jwks(running)))
    (tmp_path / "content.txt").write_text(reply.choices[0].message.content, encoding="utf-8")
    out = CliRunner().invoke(
        app,
        [
            "receipt",
            "verify",
            receipt,
            "--jwks",
            str(tmp_path / "jwks.json"),
            "--content",
            str(tmp_path / "content.txt"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "served by smol" in out.output


def test_refused_requests_carry_no_receipt(running: Running) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        running.client().chat.completions.with_raw_response.create(
            model="nope", messages=MESSAGES, max_tokens=4
        )
    assert "x-wardgate-receipt" not in err.value.response.headers


def test_vendor_backend_receipt_names_the_upstream_model(tmp_path: Path) -> None:
    """Any backend signs: a model behind the OpenAI protocol carries its upstream model id."""
    from tests.fakes import FakeOpenAI, run_server

    from wardgate.config import GatewayConfig

    fake = FakeOpenAI(api_key="sk-prov")
    mp = pytest.MonkeyPatch()
    mp.setenv("WG_PROV_OAI", "sk-prov")
    try:
        with run_server(fake.app) as fake_url:
            config = GatewayConfig.model_validate(
                {
                    "database_url": f"sqlite:///{tmp_path / 'gw.db'}",
                    "auth": {"secret_file": str(tmp_path / "secret"), "secret_env": "WG_PROV_NO"},
                    "guards": {"input": [], "output": []},
                    "models": [
                        {"name": "gpt", "backend": "openai", "base_url": f"{fake_url}/v1",
                         "api_key_env": "WG_PROV_OAI", "upstream_model": "gpt-4o-mini",
                         "tags": {"deployment": "vendor"}, "retries": 0},
                    ],
                }
            )  # fmt: skip
            gateway = Gateway(config)
            key = gateway.keys.create(owner="app")[1]
            with serve_in_thread(create_app(config, gateway=gateway)) as url:
                client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
                reply = client.chat.completions.create(model="gpt", messages=MESSAGES)
                jwks = httpx.get(url + "/.well-known/wardgate/keys").json()
                stream = list(
                    client.chat.completions.create(model="gpt", messages=MESSAGES, stream=True)
                )
    finally:
        mp.undo()
    checked = verify_receipt(
        reply.model_extra["wardgate"]["receipt"],
        keyset_from_jwks(jwks),
        content=reply.choices[0].message.content,
    )
    assert checked.payload["weights"] == {"upstream_model": "gpt-4o-mini", "deployment": "vendor"}
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    last = stream[-1]
    assert last.choices[0].finish_reason is not None
    verify_receipt(
        last.model_extra["wardgate"]["receipt"], keyset_from_jwks(jwks), content=streamed
    )


def test_audit_chain_covers_the_stored_receipt(running: Running) -> None:
    """Runs last on this gateway's database: it tampers with a stored receipt."""
    import sqlalchemy as sa

    from wardgate.store.audit import verify_chain

    reply = running.client().chat.completions.create(
        model="smol", messages=MESSAGES, max_tokens=4, temperature=0
    )
    assert _audit_receipt(running, reply.id)
    engine = running.gateway.engine
    assert verify_chain(engine).ok
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE wardgate_audit_log SET receipt = 'x.y.z' WHERE request_id = :r"),
            {"r": reply.id},
        )
    report = verify_chain(engine)
    assert not report.ok and report.kind == "altered"
