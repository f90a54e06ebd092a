"""``ChunkEncoder`` fills byte templates; its output must stay byte for byte what a full
JSON encode of each event gave (the encoder as it was before the templates, kept here)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from wardgate.chat import ToolCallDelta, Usage
from wardgate.errors import UpstreamError
from wardgate.gateway.responses import STOP_REASON, ChunkEncoder, tool_call_fragment


class ReferenceEncoder:
    """The encoder before the templates: one dict and one ``orjson.dumps`` per event."""

    def __init__(self, *, request_id: str, model: str, created: int) -> None:
        self._id = request_id
        self._model = model
        self._created = created

    def _event(
        self,
        choices: list[dict[str, Any]],
        usage: Usage | None = None,
        receipt: str | None = None,
    ) -> bytes:
        body: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage.as_dict()
        if receipt is not None:
            body["wardgate"] = {"receipt": receipt}
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def role(self) -> bytes:
        return self._event(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )

    def content(self, text: str) -> bytes:
        return self._event(
            [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]
        )

    def tool_calls(self, fragments: list[ToolCallDelta]) -> bytes:
        delta = {"tool_calls": [tool_call_fragment(f) for f in fragments]}
        return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def finish(
        self, reason: str, receipt: str | None = None, stop_sequence: str | None = None
    ) -> bytes:
        choice: dict[str, Any] = {
            "index": 0, "delta": {}, "logprobs": None, "finish_reason": reason
        }  # fmt: skip
        if stop_sequence is not None:
            choice[STOP_REASON] = stop_sequence
        return self._event([choice], receipt=receipt)

    def usage(self, usage: Usage, receipt: str | None = None) -> bytes:
        return self._event([], usage, receipt)


#: Texts a delta may carry: plain, empty, JSON's escapes, every control character, the
#: characters JSON may leave unescaped but ``str.splitlines`` would not, non-BMP, and
#: strings that look like the template's own bytes.
TEXTS = [
    "",
    " ",
    "Hello",
    "Hello, world! How can I help you today?",
    '"',
    "\\",
    '\\"',
    "/",
    "</script>",
    "\n",
    "\r\n",
    "\t",
    "\b\f",
    "".join(chr(c) for c in range(0x20)),
    "\x7f",
    "\u0085\u2028\u2029",
    "é",
    "naïve café — déjà vu",
    "日本語のテキスト",
    "emoji 🎉👍🏽 and 𝄞",
    "\ufeff\u200b\u200d\u2060",
    "\ufffd",
    'data: {"x":1}\n\n',
    '"},"logprobs":null,"finish_reason":"stop"}]}',
    "[DONE]",
    "x" * 10_000,
    "{}[]:,",
]

#: Ids and model names, including ones that need escaping themselves.
NAMES = [
    ("chatcmpl-0123456789abcdef01234567", "smollm2-135m"),
    ("chatcmpl-x", 'we"ird\\model\n'),
    ("", ""),
    ("id-é", "模型"),
]


def pair(request_id: str, model: str) -> tuple[ChunkEncoder, ReferenceEncoder]:
    encoder = ChunkEncoder(request_id=request_id, model=model)
    created = encoder._created
    return encoder, ReferenceEncoder(request_id=request_id, model=model, created=created)


@pytest.mark.parametrize(("request_id", "model"), NAMES)
@pytest.mark.parametrize("text", TEXTS)
def test_content_is_byte_identical(request_id: str, model: str, text: str) -> None:
    encoder, reference = pair(request_id, model)
    assert encoder.content(text) == reference.content(text)


def test_content_of_every_code_point_range() -> None:
    encoder, reference = pair("chatcmpl-cp", "m")
    for start in range(0, 0x110000, 0x400):
        # Lone surrogates are not text a delta can carry (orjson refuses them, below).
        text = "".join(chr(c) for c in range(start, start + 0x400) if not 0xD800 <= c < 0xE000)
        assert encoder.content(text) == reference.content(text)


def test_content_with_a_lone_surrogate_fails_as_before() -> None:
    encoder, reference = pair("chatcmpl-s", "m")
    with pytest.raises(orjson.JSONEncodeError):
        reference.content("a\ud800b")
    with pytest.raises(orjson.JSONEncodeError):
        encoder.content("a\ud800b")


def test_content_decodes_to_the_text() -> None:
    encoder, _ = pair("chatcmpl-d", "m")
    for text in TEXTS:
        event = encoder.content(text)
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        body = orjson.loads(event[len(b"data: ") : -2])
        assert body["choices"][0]["delta"]["content"] == text


def test_str_subclass_encodes_as_before() -> None:
    class Text(str):
        pass

    encoder, reference = pair("chatcmpl-sub", "m")
    assert encoder.content(Text("hi \"there\"")) == reference.content(Text("hi \"there\""))


@pytest.mark.parametrize(("request_id", "model"), NAMES)
def test_every_other_event_is_byte_identical(request_id: str, model: str) -> None:
    encoder, reference = pair(request_id, model)
    assert encoder.role() == reference.role()
    fragments = [
        ToolCallDelta(index=0, id="call_1", name="lookup", arguments=""),
        ToolCallDelta(index=0, arguments='{"q": "é\\n"}'),
        ToolCallDelta(index=1, id="call_2", name=None, arguments="{}"),
    ]
    assert encoder.tool_calls(fragments) == reference.tool_calls(fragments)
    assert encoder.tool_calls(fragments[1:2]) == reference.tool_calls(fragments[1:2])
    usage = Usage(prompt_tokens=12, completion_tokens=34)
    for reason in ("stop", "length", "tool_calls", "content_filter"):
        for receipt in (None, "eyJhbGciOiJFZERTQSJ9.e30.sig"):
            for stop in (None, "###", "\n\"end\""):
                assert encoder.finish(reason, receipt, stop_sequence=stop) == reference.finish(
                    reason, receipt, stop_sequence=stop
                )
            assert encoder.usage(usage, receipt) == reference.usage(usage, receipt)
    assert encoder.usage(Usage()) == reference.usage(Usage())


def test_a_whole_stream_is_byte_identical() -> None:
    encoder, reference = pair("chatcmpl-" + "ab" * 12, "smollm2-135m")
    ours = [encoder.role(), *map(encoder.content, TEXTS), encoder.finish("stop", "r")]
    theirs = [reference.role(), *map(reference.content, TEXTS), reference.finish("stop", "r")]
    assert b"".join(ours) == b"".join(theirs)


def test_created_is_fixed_per_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """The template carries the creation time of the stream, not of each event."""
    encoder = ChunkEncoder(request_id="chatcmpl-t", model="m")
    created = encoder._created
    monkeypatch.setattr(time, "time", lambda: created + 100.0)
    body = orjson.loads(encoder.content("later")[len(b"data: ") : -2])
    assert body["created"] == created
    assert orjson.loads(encoder.finish("stop")[len(b"data: ") : -2])["created"] == created


def test_error_and_done_are_unchanged() -> None:
    error = UpstreamError("the upstream failed mid-stream", code="upstream_stream_error")
    assert ChunkEncoder.error(error) == b"data: " + orjson.dumps(error.to_body()) + b"\n\n"
    assert ChunkEncoder.done() == b"data: [DONE]\n\n"
