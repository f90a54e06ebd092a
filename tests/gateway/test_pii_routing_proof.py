"""Routing proof (issue 16): personal data in four languages never reaches a vendor raw.

``examples/hybrid.yaml`` as shipped - logical model ``auto`` over a vendor model and the
embedded SmolLM2, the default guards (the shipped name recogniser on), the default routing
rules - with only its vendor base URLs pointed at the local protocol-faithful fakes and its
database at a temporary file. A request naming a person and giving a phone number, in English,
German, French or Spanish, sent through the official openai SDK:

* as shipped, it is served by the on-prem model and the vendor fakes receive nothing;
* with the operator rule "vendors may see PII once pseudonymised", it is served by the vendor,
  which receives placeholders only, and the client gets the real values back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml
from tests.conftest import serve_in_thread
from tests.fakes import FakeAnthropic, FakeOpenAI, run_server

from wardgate.config import GatewayConfig
from wardgate.gateway.app import create_app
from wardgate.gateway.service import Gateway
from wardgate.store.audit import tail

HYBRID = Path(__file__).resolve().parents[2] / "examples" / "hybrid.yaml"
VENDOR_KEY = "sk-vendor-test-0123456789abcdef"
#: (language, message, the raw values the vendor must never see). Names not in any
#: gazetteer-free easy form: surnames, accents, particles; phones in national formats.
MESSAGES = [
    ("en", "Please call Margaret Holloway back on 020 7946 0958 about her claim.",
     ("Margaret Holloway", "Holloway", "020 7946 0958")),
    ("de", "Bitte ruf Jürgen Hoffmann unter 0176 4921 8830 wegen der Rechnung zurück.",
     ("Jürgen Hoffmann", "Hoffmann", "0176 4921 8830")),
    ("fr", "Rappelle Hélène Rousseau au 06 12 34 56 78 pour son dossier.",
     ("Hélène Rousseau", "Rousseau", "06 12 34 56 78")),
    ("es", "Llama a Javier Fernández al 612 34 56 78 por la factura.",
     ("Javier Fernández", "Fernández", "612 34 56 78")),
]  # fmt: skip


class Proof:
    def __init__(self, url: str, gateway: Gateway, key: str, oai: FakeOpenAI, anth: FakeAnthropic):
        self.url, self.gateway, self.key, self.oai, self.anth = url, gateway, key, oai, anth

    def ask(self, text: str, max_tokens: int = 6) -> str:
        client = openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0)
        reply = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": text}], max_tokens=max_tokens
        )
        return reply.choices[0].message.content or ""

    def vendor_saw(self) -> str:
        return repr([r.body for r in self.oai.requests] + [r.body for r in self.anth.requests])

    def last_audit(self) -> dict[str, object]:
        assert self.gateway.audit.flush()
        return tail(self.gateway.engine, 1)[0]


def _stack(tmp: Path, *, pseudonymised_vendors: bool) -> Iterator[Proof]:
    raw = yaml.safe_load(HYBRID.read_text(encoding="utf-8"))
    oai, anth = FakeOpenAI(api_key=VENDOR_KEY), FakeAnthropic(api_key=VENDOR_KEY)
    mp = pytest.MonkeyPatch()
    mp.setenv("OPENAI_API_KEY", VENDOR_KEY)
    mp.setenv("ANTHROPIC_API_KEY", VENDOR_KEY)
    with run_server(oai.app) as oai_url, run_server(anth.app) as anth_url:
        raw["database_url"] = f"sqlite:///{tmp / 'gw.db'}"
        raw["auth"] = {"secret_file": str(tmp / "secret"), "secret_env": "WG_TEST_NO_SECRET"}
        for model in raw["models"]:
            if model["backend"] == "openai":
                model["base_url"] = f"{oai_url}/v1"
            elif model["backend"] == "anthropic":
                model["base_url"] = anth_url
            if model["backend"] == "llamacpp":
                model["max_output_tokens"] = 8
        if pseudonymised_vendors:
            raw["routing"]["rules"] = [
                {
                    "name": "pii-to-vendors-only-pseudonymised",
                    "when": {"data_classes": ["pii"]},
                    "allow": {"deployment": ["on_prem"]},
                    "vendor_if_pseudonymised": True,
                }
            ]
        config = GatewayConfig.model_validate(raw)
        assert "guards" not in raw and config.guards.input  # the shipped default pipeline
        gateway = Gateway(config)
        key = gateway.keys.create(owner="proof")[1]
        with serve_in_thread(create_app(config, gateway=gateway)) as url:
            yield Proof(url, gateway, key, oai, anth)
    mp.undo()


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proof]:
    yield from _stack(tmp_path_factory.mktemp("proof"), pseudonymised_vendors=False)


@pytest.fixture(scope="module")
def pseudonymising(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proof]:
    yield from _stack(tmp_path_factory.mktemp("proof-p"), pseudonymised_vendors=True)


@pytest.mark.parametrize(("lang", "text", "raw"), MESSAGES, ids=[m[0] for m in MESSAGES])
def test_as_shipped_personal_data_is_served_on_prem(
    shipped: Proof, lang: str, text: str, raw: tuple[str, ...]
) -> None:
    shipped.oai.requests.clear()
    shipped.anth.requests.clear()
    shipped.ask(text)
    record = shipped.last_audit()
    assert record["backend_used"] == "smollm2-135m", record
    assert shipped.oai.requests == [] and shipped.anth.requests == []
    # Without a name the same kind of request goes to the vendor (the proof is not vacuous).
    shipped.ask("Summarise the benefits of unit tests in one sentence.")
    assert shipped.last_audit()["backend_used"] == "gpt-4o-mini"
    assert not any(value in shipped.vendor_saw() for value in raw)


@pytest.mark.parametrize(("lang", "text", "raw"), MESSAGES, ids=[m[0] for m in MESSAGES])
def test_pseudonymised_for_the_vendor_and_restored_for_the_client(
    pseudonymising: Proof, lang: str, text: str, raw: tuple[str, ...]
) -> None:
    pseudonymising.oai.requests.clear()
    answer = pseudonymising.ask(text, max_tokens=64)
    assert pseudonymising.last_audit()["backend_used"] == "gpt-4o-mini"
    seen = pseudonymising.vendor_saw()
    assert pseudonymising.oai.requests, "the vendor fake was not called"
    assert "<PERSON_1>" in seen and "<PHONE_1>" in seen
    for value in raw:
        assert value not in seen, (value, seen)
    # The fake echoes what it received; the gateway restores the client's own values.
    assert raw[0] in answer and raw[2] in answer, answer
