"""Fixtures for the vendor backends: real fake-vendor servers on free ports.

One server per module keeps the suite fast; every test gets it back clean (no recorded
requests, no queued faults).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.backends._keys import KEY_ENV, VENDOR_KEY
from tests.fakes import FakeAnthropic, FakeOpenAI, run_server


@pytest.fixture(scope="module")
def _openai_server() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(api_key=VENDOR_KEY)
    with run_server(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def _anthropic_server() -> Iterator[tuple[FakeAnthropic, str]]:
    fake = FakeAnthropic(api_key=VENDOR_KEY)
    with run_server(fake.app) as url:
        yield fake, url


@pytest.fixture
def vendor_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, VENDOR_KEY)
    return VENDOR_KEY


@pytest.fixture
def openai_fake(_openai_server: tuple[FakeOpenAI, str]) -> Iterator[FakeOpenAI]:
    fake, _ = _openai_server
    fake.requests.clear()
    fake.faults.clear()
    yield fake
    fake.faults.clear()


@pytest.fixture
def openai_url(_openai_server: tuple[FakeOpenAI, str]) -> str:
    return _openai_server[1]


@pytest.fixture
def anthropic_fake(_anthropic_server: tuple[FakeAnthropic, str]) -> Iterator[FakeAnthropic]:
    fake, _ = _anthropic_server
    fake.requests.clear()
    fake.faults.clear()
    yield fake
    fake.faults.clear()


@pytest.fixture
def anthropic_url(_anthropic_server: tuple[FakeAnthropic, str]) -> str:
    return _anthropic_server[1]
