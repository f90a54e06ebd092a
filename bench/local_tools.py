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

Prints a JSON report with Wilson 95 % intervals (figures in docs/agents.md).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from wardgate.backends.llamacpp import LlamaCppBackend
from wardgate.chat import ChatRequest
from wardgate.config import ModelConfig
from wardgate.redteam.stats import wilson


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
    backend = LlamaCppBackend(
        ModelConfig.model_validate(
            {"name": "smol", "backend": "llamacpp", "n_ctx": 1024, "max_output_tokens": 64}
        )
    )
    await backend.start()
    started = time.perf_counter()
    valid = right_tool = right_arg = auto_calls = 0
    for prompt, expected, word in CASES:
        reply = await backend.complete(request(prompt, tools=TOOLS, tool_choice="required"))
        if reply.tool_calls:
            call = reply.tool_calls[0]
            args = json.loads(call.arguments)
            valid += isinstance(args.get(ARG[call.name]), str)
            right_tool += call.name == expected
            right_arg += call.name == expected and word in str(args.get(ARG[call.name])).lower()
        auto = await backend.complete(request(prompt, tools=TOOLS, tool_choice="auto"))
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
    grammar_ok = prompt_ok = 0
    for place in places:
        ask = f"Give the city {place} and its country as JSON with keys city and country."
        grammar_ok += fits_city((await backend.complete(request(ask, response_format=fmt))).text)
        prompt_ok += fits_city(
            (await backend.complete(request(ask + " Schema: " + json.dumps(CITY_SCHEMA)))).text
        )
    await backend.aclose()
    n = len(CASES)
    report = {
        "model": "SmolLM2-135M-Instruct Q4_1 (embedded)",
        "cases": n,
        "required_schema_valid": wilson(valid, n).as_dict(),
        "required_right_tool": wilson(right_tool, n).as_dict(),
        "required_right_tool_and_argument": wilson(right_arg, n).as_dict(),
        "auto_called_a_tool": wilson(auto_calls, n).as_dict(),
        "json_schema_with_grammar": wilson(grammar_ok, len(places)).as_dict(),
        "json_schema_prompt_only": wilson(prompt_ok, len(places)).as_dict(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    asyncio.run(main())
