"""What the embedded SmolLM2-135M can do with tools and JSON, by grammar and by prompt.

For 30 hand-written requests (10 per tool: weather, web search, unit conversion; written for
this benchmark, nothing tuned on them) the backend is asked three ways, greedy (temperature
0, seed 1):

* ``required``: a grammar forces ``{"name": <tool>, "arguments": <its schema>}``.
  Counted: the answer parses and fits the schema; the right tool; the key argument value
  contains the expected word (city / topic / unit).
* ``auto``: tools described in the system prompt, answer free: how often it calls at all.
* JSON answers: ``response_format: json_schema`` (grammar) versus the same request with the
  schema only in the prompt, counted as parses-and-fits-the-schema.

    .venv/bin/python bench/local_tools.py            # ~2 minutes on 2 cores

Prints a JSON report with Wilson 95 % intervals (figures in docs/agents.md). Built to survive
a loaded machine: one llama.cpp thread, generous per-answer and queue limits, one retry of a
timed-out answer, and a request that still fails is counted under ``errors`` and left out of
every rate (never silently counted as a miss); ``--max-seconds`` bounds the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

from wardgate.backends.llamacpp import LlamaCppBackend
from wardgate.chat import ChatRequest, Completion
from wardgate.config import ModelConfig
from wardgate.errors import UpstreamError
from wardgate.redteam.stats import wilson

#: One thread: on a shared 2-core machine a second mostly spins. Limits far above a quiet
#: machine's ~2 s per answer, so load slows the run down instead of failing it.
MODEL = {"name": "smol", "backend": "llamacpp", "n_ctx": 1024, "max_output_tokens": 64,
         "n_threads": 1, "timeout_s": 300, "queue_wait_s": 300}  # fmt: skip


class Attempts:
    """Runs each request with one retry of a retryable failure; counts what still fails."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.errors: dict[str, int] = {}

    async def __call__(self, make: Callable[[], Awaitable[Completion]]) -> Completion | None:
        if time.monotonic() > self.deadline:
            self.errors["run_deadline"] = self.errors.get("run_deadline", 0) + 1
            return None
        for attempt in range(2):
            try:
                return await make()
            except UpstreamError as error:
                if attempt == 1 or not error.retryable:
                    self.errors[error.code] = self.errors.get(error.code, 0) + 1
                    print(f"request failed ({error.code}): {error.message}", file=sys.stderr)
                    return None
        return None


def tool(name: str, description: str, arg: str) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {arg: {"type": "string"}},
                "required": [arg],
            },
        },
    }


TOOLS = [
    tool("get_weather", "Current weather for a city", "city"),
    tool("web_search", "Search the web for a topic", "query"),
    tool("convert_units", "Convert a quantity to another unit", "target_unit"),
]
# (prompt, expected tool, word the key argument must contain)
CASES = [
    ("What's the weather like in Paris right now?", "get_weather", "paris"),
    ("Is it raining in London today?", "get_weather", "london"),
    ("How hot is it in Madrid?", "get_weather", "madrid"),
    ("Tell me the current temperature in Tokyo.", "get_weather", "tokyo"),
    ("Do I need an umbrella in Berlin this afternoon?", "get_weather", "berlin"),
    ("What is the weather forecast for Rome?", "get_weather", "rome"),
    ("Is it windy in Chicago?", "get_weather", "chicago"),
    ("Check the weather in Oslo for me.", "get_weather", "oslo"),
    ("How cold is it in Moscow at the moment?", "get_weather", "moscow"),
    ("Weather in Sydney, please.", "get_weather", "sydney"),
    ("Find recent news about electric cars.", "web_search", "electric"),
    ("Search for the history of the Roman empire.", "web_search", "roman"),
    ("Look up recipes for banana bread.", "web_search", "banana"),
    ("Who won the last football world cup? Search it.", "web_search", "world cup"),
    ("Find articles about climate change.", "web_search", "climate"),
    ("Search the web for Python tutorials.", "web_search", "python"),
    ("Look up the population of Canada.", "web_search", "canada"),
    ("Find information about black holes.", "web_search", "black hole"),
    ("Search for the best hiking trails in Norway.", "web_search", "hiking"),
    ("Look up reviews of the new iPhone.", "web_search", "iphone"),
    ("Convert 10 miles to kilometers.", "convert_units", "kilomet"),
    ("How many pounds is 5 kilograms?", "convert_units", "pound"),
    ("Convert 100 Fahrenheit to Celsius.", "convert_units", "celsius"),
    ("What is 3 feet in centimeters?", "convert_units", "centimet"),
    ("Convert 2 liters into gallons.", "convert_units", "gallon"),
    ("How many ounces are in 1 kilogram? Convert it.", "convert_units", "ounce"),
    ("Change 50 kilometers per hour to miles per hour.", "convert_units", "mile"),
    ("Convert 1 inch to millimeters.", "convert_units", "millimet"),
    ("Turn 30 Celsius into Fahrenheit.", "convert_units", "fahrenheit"),
    ("Convert 8 ounces to grams.", "convert_units", "gram"),
]
ARG = {"get_weather": "city", "web_search": "query", "convert_units": "target_unit"}
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


def request(prompt: str, **extra: object) -> ChatRequest:
    body = {
        "model": "smol",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "seed": 1,
        "max_tokens": 64,
        **extra,
    }
    return ChatRequest.model_validate(body)


def fits_city(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return (
        isinstance(value, dict)
        and set(value) == {"city", "country"}
        and all(isinstance(v, str) and v for v in value.values())
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=3600,
                        help="stop sending requests after this long (the rest count as errors)")
    args = parser.parse_args()
    backend = LlamaCppBackend(ModelConfig.model_validate(MODEL))
    await backend.start()
    started = time.perf_counter()
    attempt = Attempts(time.monotonic() + args.max_seconds)
    valid = right_tool = right_arg = auto_calls = forced_n = auto_n = 0
    for prompt, expected, word in CASES:
        reply = await attempt(lambda p=prompt: backend.complete(
            request(p, tools=TOOLS, tool_choice="required")))
        if reply is not None:
            forced_n += 1
        if reply is not None and reply.tool_calls:
            call = reply.tool_calls[0]
            args_ = json.loads(call.arguments)
            valid += isinstance(args_.get(ARG[call.name]), str)
            right_tool += call.name == expected
            right_arg += call.name == expected and word in str(args_.get(ARG[call.name])).lower()
        auto = await attempt(lambda p=prompt: backend.complete(
            request(p, tools=TOOLS, tool_choice="auto")))
        if auto is not None:
            auto_n += 1
            auto_calls += bool(auto.tool_calls)
    places = [
        "Paris",
        "Kyoto",
        "Lima",
        "Cairo",
        "Dublin",
        "Quebec",
        "Munich",
        "Seville",
        "Perth",
        "Bergen",
    ]
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": CITY_SCHEMA}}
    grammar_ok = prompt_ok = grammar_n = prompt_n = 0
    for place in places:
        ask = f"Give the city {place} and its country as JSON with keys city and country."
        structured = await attempt(lambda a=ask: backend.complete(
            request(a, response_format=fmt)))
        if structured is not None:
            grammar_n += 1
            grammar_ok += fits_city(structured.text)
        free = await attempt(lambda a=ask: backend.complete(
            request(a + " Schema: " + json.dumps(CITY_SCHEMA))))
        if free is not None:
            prompt_n += 1
            prompt_ok += fits_city(free.text)
    await backend.aclose()
    report = {
        "model": "SmolLM2-135M-Instruct Q4_1 (embedded), greedy, one thread",
        "cases": len(CASES),
        "required_schema_valid": wilson(valid, forced_n).as_dict(),
        "required_right_tool": wilson(right_tool, forced_n).as_dict(),
        "required_right_tool_and_argument": wilson(right_arg, forced_n).as_dict(),
        "auto_called_a_tool": wilson(auto_calls, auto_n).as_dict(),
        "json_schema_with_grammar": wilson(grammar_ok, grammar_n).as_dict(),
        "json_schema_prompt_only": wilson(prompt_ok, prompt_n).as_dict(),
        "errors (left out of the rates)": attempt.errors,
        "seconds": round(time.perf_counter() - started, 1),
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    asyncio.run(main())
