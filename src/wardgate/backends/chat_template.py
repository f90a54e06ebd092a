"""Chat-template rendering inside jinja2's immutable sandbox.

GGUF files carry their chat template as Jinja source in metadata. A poisoned template is code
from whoever published the weights, so it is only ever rendered in
:class:`jinja2.sandbox.ImmutableSandboxedEnvironment`: no attribute escapes, no mutation of
the objects we pass in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from wardgate.chat import ChatMessage
from wardgate.errors import ConfigError, InvalidRequest

#: Used when a GGUF has no template: ChatML, which SmolLM2 and many others speak.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Roles that templates written before the OpenAI "developer" role do not know.
_ROLE_ALIASES = {"developer": "system", "function": "tool"}


class ChatTemplate:
    """A compiled, sandboxed chat template."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_template_exception
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise ConfigError(f"chat template does not compile: {exc}") from exc
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """Render the prompt with the generation prompt appended."""
        plain: list[dict[str, Any]] = [
            {"role": _ROLE_ALIASES.get(m.role, m.role), "content": _content(m)} for m in messages
        ]
        try:
            return self._template.render(
                messages=plain,
                add_generation_prompt=True,
                bos_token=self._bos,
                eos_token=self._eos,
            )
        except TemplateError as exc:
            # Templates reject some conversations (e.g. roles out of order): a client error.
            raise InvalidRequest(f"the model's chat template rejected the messages: {exc}") from exc


def _content(message: ChatMessage) -> str:
    """The message text; an assistant's earlier tool calls are written out the way the
    model is asked to write them (``backends.local_tools``), so it sees its own calls."""
    if not message.tool_calls:
        return message.text
    calls = []
    for call in message.tool_calls:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        calls.append(
            '<tool_call>{"name": '
            + json.dumps(str(function.get("name") or ""))
            + ', "arguments": '
            + (arguments if isinstance(arguments, str) else "{}")
            + "}</tool_call>"
        )
    return "\n".join([message.text, *calls] if message.text else calls)


def _raise_template_exception(message: str) -> None:
    raise TemplateError(message)
