"""Tool calls and JSON answers for local GGUF models, by prompt and by grammar.

llama.cpp has no notion of tools; what it has is grammar-constrained sampling, which makes
a model emit only text that matches a JSON Schema. Wardgate uses it like this:

* ``response_format`` (``json_object`` / ``json_schema``): the answer is sampled under the
  schema's grammar, so it always parses and fits the schema (unless ``max_tokens`` cuts it).
* ``tool_choice: required`` or a named function: the answer is sampled under the grammar of
  ``{"name": <one of the tools>, "arguments": <that tool's parameters>}`` and becomes one
  tool call (``finish_reason: tool_calls``). One call per answer: no parallel calls.
* ``tool_choice: auto``: the tools are described in the system prompt in the common
  Hermes/Qwen convention and the answer is sampled freely; if it is a
  ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` block it becomes a call,
  otherwise it is text.

What the embedded SmolLM2-135M makes of this (measured in tests/backends/test_local_tools.py):
under a grammar its calls and JSON answers are always well-formed and schema-valid, and the
argument *values* are often sensible for a one-field tool; left to choose (``auto``) it
practically never calls a tool. Larger instruction-tuned GGUFs (Qwen2.5, Hermes, Llama 3.1)
were trained on this prompt convention and use ``auto`` as intended.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from wardgate.chat import ChatMessage, ChatRequest, ToolCall

ToolMode = Literal["text", "json", "forced", "auto"]

_TOOL_CALL = re.compile(r"^\s*<tool_call>\s*(\{.*\})\s*(?:</tool_call>)?\s*$", re.DOTALL)
#: Leading characters of an answer that may still turn out to be a ``<tool_call>`` block.
TOOL_CALL_OPENING = "<tool_call>"


@dataclass(frozen=True, slots=True)
class LocalPlan:
    """How to sample one request: the mode, the grammar's schema and the prompt additions."""

    mode: ToolMode
    schema: dict[str, Any] | None = None
    system_addition: str = ""


def plan(request: ChatRequest) -> LocalPlan:
    if request.uses_tools:
        tools = request.tools or []
        forced = request.forced_tool
        if forced is not None or request.tool_choice == "required":
            chosen = [t for t in tools if forced is None or t.function.name == forced]
            options: list[dict[str, Any]] = [
                {
                    "type": "object",
                    "properties": {
                        "name": {"const": t.function.name},
                        "arguments": t.function.parameters or {"type": "object"},
                    },
                    "required": ["name", "arguments"],
                }
                for t in chosen
            ]
            schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
            return LocalPlan("forced", schema, _describe(request))
        return LocalPlan("auto", None, _describe(request))
    answer_schema = request.json_schema
    if answer_schema is not None:
        return LocalPlan("json", answer_schema, "")
    return LocalPlan("text")


def _describe(request: ChatRequest) -> str:
    specs = [
        orjson.dumps(
            {
                "name": t.function.name,
                "description": t.function.description or "",
                "parameters": t.function.parameters or {"type": "object"},
            }
        ).decode()
        for t in request.tools or []
    ]
    return (
        "You may call one of these tools when it helps answer the user:\n<tools>\n"
        + "\n".join(specs)
        + "\n</tools>\nTo call a tool, answer with only "
        '<tool_call>{"name": <tool name>, "arguments": <JSON object>}</tool_call>.'
    )


def with_system(messages: list[ChatMessage], addition: str) -> list[ChatMessage]:
    """``messages`` with ``addition`` appended to the system prompt (or as one, first)."""
    if not addition:
        return messages
    for i, message in enumerate(messages):
        if message.role in ("system", "developer"):
            merged = message.model_copy(update={"content": f"{message.text}\n\n{addition}"})
            return [*messages[:i], merged, *messages[i + 1 :]]
    return [ChatMessage(role="system", content=addition), *messages]


@functools.lru_cache(maxsize=64)
def grammar_for(schema_json: str) -> Any:
    """The llama.cpp grammar of a JSON Schema (cached: schemas repeat across requests)."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def parse_forced(text: str) -> ToolCall | None:
    """The call a grammar-constrained answer encodes; None when it was cut short."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments")
    return ToolCall(
        id=new_call_id(),
        name=data["name"],
        arguments=orjson.dumps(arguments if isinstance(arguments, dict) else {}).decode(),
    )


def parse_auto(text: str, names: list[str]) -> ToolCall | None:
    """The call in a free answer that is one ``<tool_call>`` block naming a known tool."""
    match = _TOOL_CALL.match(text)
    if match is None:
        return None
    call = parse_forced(match.group(1))
    return call if call is not None and call.name in names else None


def may_be_tool_call(prefix: str) -> bool:
    """Whether an answer starting with ``prefix`` could still be a ``<tool_call>`` block."""
    head = prefix.lstrip()
    return TOOL_CALL_OPENING.startswith(head) or head.startswith(TOOL_CALL_OPENING)
