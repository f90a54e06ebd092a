"""Local servers that speak vendor protocols faithfully, for testing against real HTTP.

>>> from tests.fakes import FakeOpenAI, run_server
>>> fake = FakeOpenAI(api_key="sk-test")
>>> with run_server(fake.app) as url:          # doctest: +SKIP
...     ...  # point a backend at f"{url}/v1"; inspect fake.requests afterwards
"""

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.echo import echo_answer
from tests.fakes.faults import FAULT_HEADER, Fault, FaultScript
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.server import RecordedRequest, run_server

__all__ = [
    "FAULT_HEADER",
    "FakeAnthropic",
    "FakeOpenAI",
    "Fault",
    "FaultScript",
    "RecordedRequest",
    "echo_answer",
    "run_server",
]
