"""Watermarks end to end: the official openai SDK against the gateway on the embedded model,
streaming and not, then detection through the API and the CLI (GGUF vocabulary only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from tests.conftest import serve_in_thread
from tests.gateway.test_gateway_e2e import Running, gateway_config
from typer.testing import CliRunner

from wardgate.cli.main import app
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.provenance.receipts import verify_receipt
from wardgate.provenance.signing_keys import keyset_from_jwks

PROMPT = [{"role": "user", "content": "Write a few sentences about the history of bread."}]
KEY = "wm-test-key-0123456789abcdef0123456789abcdef"


def _raw_config(tmp: Path) -> dict:
    models = [
        {"name": "smol-kgw", "n_ctx": 512, "max_output_tokens": 120,
         "watermark": {"scheme": "kgw", "delta": 4.0, "key_env": "WG_TEST_WM_KEY"}},
        {"name": "smol-exp", "n_ctx": 512, "max_output_tokens": 120,
         "watermark": {"scheme": "expmin", "key_env": "WG_TEST_WM_KEY"}},
        {"name": "smol-plain", "n_ctx": 512, "max_output_tokens": 120},
    ]  # fmt: skip
    return {
        "database_url": f"sqlite:///{tmp / 'wardgate.db'}",
        "auth": {"secret_file": str(tmp / "secret"), "secret_env": "WARDGATE_TEST_NO_SUCH_VAR"},
        "guards": {"input": [], "output": []},
        "models": models,
    }


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    mp = pytest.MonkeyPatch()
    mp.setenv("WG_TEST_WM_KEY", KEY)
    tmp = tmp_path_factory.mktemp("wm")
    raw = _raw_config(tmp)
    (tmp / "wardgate.yaml").write_text(yaml.safe_dump(raw))
    config = gateway_config(tmp, **{k: v for k, v in raw.items() if k != "database_url"})
    gateway = Gateway(config)
    keys = {
        "user": gateway.keys.create(owner="app")[1],
        "detector": gateway.keys.create(owner="trust", scopes=["watermark:detect"])[1],
        "admin": gateway.keys.create(owner="ops", admin=True)[1],
    }
    try:
        with serve_in_thread(create_app(config, gateway=gateway)) as url:
            running = Running(url, gateway, keys)
            running.config_file = tmp / "wardgate.yaml"  # type: ignore[attr-defined]
            yield running
    finally:
        mp.undo()


def _detect(running: Running, body: dict, key: str = "detector") -> httpx.Response:
    return httpx.post(
        running.url + "/v1/watermark/detect",
        json=body,
        headers={"authorization": f"Bearer {running.keys[key]}"},
        timeout=60,
    )


def _answer(
    running: Running, model: str, *, stream: bool, temperature: float = 0.8, tokens: int = 120
) -> tuple[str, str]:
    client = running.client()
    if not stream:
        reply = client.chat.completions.create(
            model=model, messages=PROMPT, max_tokens=tokens, temperature=temperature, seed=7
        )
        return reply.choices[0].message.content, reply.model_extra["wardgate"]["receipt"]
    chunks = list(
        client.chat.completions.create(
            model=model, messages=PROMPT, max_tokens=120, temperature=temperature, seed=7,
            stream=True,
        )
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks[-1].model_extra["wardgate"]["receipt"]


@pytest.mark.parametrize(("model", "stream"), [("smol-kgw", False), ("smol-exp", True)])
def test_watermarked_answers_are_detected(running: Running, model: str, stream: bool) -> None:
    text, receipt = _answer(running, model, stream=stream)
    jwks = httpx.get(running.url + "/.well-known/wardgate/keys").json()
    params = verify_receipt(receipt, keyset_from_jwks(jwks), content=text).payload["watermark"]
    scheme = running.gateway.watermarks[model]
    assert params["key_id"] == scheme.key_id and params["scheme"] == scheme.config.scheme
    report = _detect(running, {"text": text, "model": model, "key_id": params["key_id"]})
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["verdict"] == "watermarked", body
    assert body["z"] >= 4 and body["p_value"] < 1e-4 and body["tokens_scored"] >= 40


def test_unwatermarked_answer_is_not_detected(running: Running) -> None:
    text, _ = _answer(running, "smol-plain", stream=False)
    body = _detect(running, {"text": text, "model": "smol-kgw"}).json()
    assert body["verdict"] == "not_watermarked", body
    assert body["z"] < 4


def test_temperature_zero_still_carries_kgw(running: Running) -> None:
    """KGW biases the argmax too: greedy answers are watermarked (and change)."""
    text, _ = _answer(running, "smol-kgw", stream=False, temperature=0, tokens=60)
    plain, _ = _answer(running, "smol-plain", stream=False, temperature=0, tokens=60)
    assert text != plain
    assert _detect(running, {"text": text, "model": "smol-kgw"}).json()["verdict"] == "watermarked"


def test_detection_errors(running: Running) -> None:
    short = _detect(running, {"text": "Bread is old.", "model": "smol-kgw"})
    assert short.status_code == 200
    assert short.json()["verdict"] == "insufficient_tokens"
    assert "insufficient tokens" in short.json()["message"]
    cases = [
        ({"text": "   ", "model": "smol-kgw"}, 400, "empty_text"),
        ({"text": "hello there", "model": "nope"}, 404, "model_not_found"),
        ({"text": "hello there", "model": "smol-plain"}, 404, "model_not_watermarked"),
        ({"text": "hello there", "model": "smol-kgw", "key_id": "0" * 16}, 400, "wrong_key_id"),
        ({"text": "hello there"}, 400, "model_required"),
        ({"text": 5, "model": "smol-kgw"}, 400, "invalid_request_body"),
    ]
    for body, status, code in cases:
        reply = _detect(running, body)
        assert reply.status_code == status, (body, reply.text)
        assert reply.json()["error"]["code"] == code
    refused = _detect(running, {"text": "hello there", "model": "smol-kgw"}, key="user")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "scope_required"
    assert (
        _detect(running, {"text": "hello " * 30, "model": "smol-kgw"}, key="admin").status_code
        == 200
    )


def test_cli_detects_offline(running: Running, tmp_path: Path) -> None:
    text, _ = _answer(running, "smol-kgw", stream=True)
    (tmp_path / "answer.txt").write_text(text, encoding="utf-8")
    runner = CliRunner()
    cfg = ["--config", str(running.config_file)]  # type: ignore[attr-defined]
    out = runner.invoke(
        app, ["watermark", "detect", str(tmp_path / "answer.txt"), "-m", "smol-kgw", *cfg],
        env={"WG_TEST_WM_KEY": KEY},
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert out.output.startswith("watermarked: z = ")
    human = "The history of bread goes back at least 30,000 years, to flat cakes of ground roots."
    as_json = runner.invoke(
        app, ["watermark", "detect", "-", "-m", "smol-kgw", "--json", *cfg],
        input=human * 3, env={"WG_TEST_WM_KEY": KEY},
    )  # fmt: skip
    report = json.loads(as_json.output)
    assert report["verdict"] in ("not_watermarked", "insufficient_tokens")
    assert as_json.exit_code in (1, 3)
    wrong = runner.invoke(
        app, ["watermark", "detect", str(tmp_path / "answer.txt"), "-m", "smol-kgw", *cfg],
        env={"WG_TEST_WM_KEY": "another-key-0123456789abcdef0123456789abc"},
    )  # fmt: skip
    assert wrong.exit_code == 1, wrong.output
