"""Tool calls on their way back to the client: policy, guards, and what the audit log keeps.

A tool call is an action the client's agent will take, so its arguments get the scrutiny an
answer's text gets, and more: the tool policy (:mod:`wardgate.tools`) decides whether the
call may happen at all, then every output guard judges each call's arguments as a whole text
(secrets, PII, canaries, exfiltration-shaped URLs). A streamed call is held until the answer
ends: a client cannot act on half a call anyway, and half a URL cannot be judged. The held
fragments are then replayed as the upstream split them, unless a guard changed the call.

The audit record keeps each call's name and the SHA-256 of its arguments (under
``routing.tool_calls``); the arguments themselves go with the completion text, which is
stored, hashed or dropped per ``audit.store_prompts``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson

from wardgate.chat import ToolCall, ToolCallDelta, assemble_tool_calls
from wardgate.errors import GuardBlocked
from wardgate.guards.execution import BlockedByGuard
from wardgate.tools import check_called

if TYPE_CHECKING:
    from wardgate.gateway.service import Gateway
    from wardgate.guards.pipeline import InputResult
    from wardgate.guards.pseudonymise import Pseudonymiser

#: Characters of arguments per re-split fragment, when a guard changed a streamed call.
_FRAGMENT_CHARS = 24


async def guard_tool_calls(
    gateway: Gateway,
    calls: list[ToolCall],
    checked: InputResult,
    allowed: frozenset[str] | None,
    pseudonymiser: Pseudonymiser | None = None,
) -> tuple[list[ToolCall], list[dict[str, Any]]]:
    """The calls as the client may see them, and the guard decisions taken on them.

    Raises :class:`~wardgate.tools.ToolNotAllowed` or a guard's block; pseudonyms are put
    back after the guards ran (they judge what the model wrote), as for text.
    """
    check_called(allowed, [call.name for call in calls])
    released: list[ToolCall] = []
    decisions: list[dict[str, Any]] = []
    for call in calls:
        try:
            arguments, found = await gateway.guards.check_response(call.arguments, checked)
        except BlockedByGuard as error:
            error.decisions = [*decisions, *_tagged(error.decisions, call)]
            raise
        decisions.extend(_tagged(found, call))
        if arguments != call.arguments and _is_json(call.arguments) and not _is_json(arguments):
            # A redaction that breaks the arguments would hand the agent a call it cannot
            # parse (or, worse, one it half-parses): refuse instead.
            raise GuardBlocked(
                f"a guard's redaction left the arguments of the tool call {call.name[:64]!r} "
                "unusable",
                code="tool_arguments_redacted",
            )
        if pseudonymiser is not None:
            arguments = pseudonymiser.restore(arguments)
        released.append(
            call
            if arguments == call.arguments
            else ToolCall(id=call.id, name=call.name, arguments=arguments)
        )
    return released, decisions


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _tagged(decisions: list[dict[str, Any]], call: ToolCall) -> list[dict[str, Any]]:
    return [{**d, "tool_call": call.name} for d in decisions]


def audit_entries(calls: list[ToolCall]) -> list[dict[str, str]]:
    """Name and argument digest per call: enough to match a call to a tool's own logs."""
    return [
        {
            "name": call.name,
            "arguments_sha256": hashlib.sha256(call.arguments.encode("utf-8")).hexdigest(),
        }
        for call in calls
    ]


def completion_record(text: str, calls: list[ToolCall]) -> str:
    """The answer as the audit log's completion: the text, or text and calls as JSON."""
    if not calls:
        return text
    return orjson.dumps({"content": text, "tool_calls": [c.as_dict() for c in calls]}).decode()


class ToolCallStream:
    """The tool-call fragments of one streamed answer, held until it ends."""

    def __init__(self) -> None:
        self._groups: list[list[ToolCallDelta]] = []

    def __bool__(self) -> bool:
        return bool(self._groups)

    def add(self, fragments: list[ToolCallDelta]) -> None:
        self._groups.append(fragments)

    def calls(self) -> list[ToolCall]:
        return assemble_tool_calls([f for group in self._groups for f in group])

    def replay(self, released: list[ToolCall]) -> list[list[ToolCallDelta]]:
        """Chunks to send: the upstream's own split when nothing changed, else a fresh one
        (an opening fragment with id and name, then the arguments in pieces)."""
        if released == self.calls():
            return self._groups
        groups: list[list[ToolCallDelta]] = []
        for index, call in enumerate(released):
            groups.append([ToolCallDelta(index, id=call.id, name=call.name)])
            args = call.arguments
            for start in range(0, len(args), _FRAGMENT_CHARS):
                groups.append(
                    [ToolCallDelta(index, arguments=args[start : start + _FRAGMENT_CHARS])]
                )
        return groups
