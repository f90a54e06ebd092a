"""Fixtures for the vendor backends: real fake-vendor servers on free ports.

One server per module keeps the suite fast; every test gets it back clean (no recorded
requests, no queued faults).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The fakes are imported as ``tests.fakes`` (also by ``python -m tests.fakes.openai_server``),
# which needs the repository root on sys.path; pytest's rootdir-relative imports only add
# the test directories. (A ``pythonpath = ["."]`` pytest setting would make this redundant.)
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.backends._keys import KEY_ENV, VENDOR_KEY  # noqa: E402
from tests.fakes import FakeAnthropic, FakeOpenAI, run_server  # noqa: E402


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
