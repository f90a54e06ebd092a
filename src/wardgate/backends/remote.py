"""HTTP plumbing shared by the backends that call a remote model server.

:class:`HTTPUpstream` owns what the OpenAI-compatible and Anthropic backends have in common:
the vendor key (read once, from the environment variable the config names), one pooled
``aiohttp.ClientSession`` sized from the config, the in-flight count, and the single mapping
from "what went wrong on the wire" to :mod:`wardgate.errors`. Keeping that mapping in one
place is what makes failover predictable: every 429 is retryable and carries its
``Retry-After``, every 5xx is retryable, every other 4xx is not, a timeout is always
:class:`~wardgate.errors.UpstreamTimeout`, and a connection that drops half-way through a
stream always raises instead of looking like a short answer.

The vendor key never leaves this module except in the request headers: upstream error text
is scrubbed of it (and of anything key-shaped) before it becomes a client-visible message,
and nothing here logs request or response bodies.

Why aiohttp and not httpx: the upstream client sits on every request's path, and httpx's
pool (httpcore) spends about 1.3 ms of CPU per request on pool bookkeeping and a socket
readability probe, more than the gateway's whole budget; aiohttp costs about 0.1 ms for the
same request (``bench/vendor_backends.py``, figures in ``docs/backends.md``).
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from yarl import URL

from wardgate.backends.sse import SSEDecodeError, SSEDecoder, SSEEvent
from wardgate.config import ModelConfig
from wardgate.errors import ConfigError, UpstreamError, UpstreamTimeout

log = logging.getLogger(__name__)

#: Upstream error text shown to clients is cut here: enough to debug, too short to smuggle.
MAX_UPSTREAM_MESSAGE_CHARS = 300
#: A whole (non-streamed) answer larger than this is refused rather than buffered.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Idle pooled connections are closed after this long. Just under the 5 s idle limit of
#: uvicorn (vLLM) and llama.cpp's server, so the gateway does not send a request down a
#: connection the server is closing at that very moment (which would fail the attempt).
KEEPALIVE_S = 4.0
#: Key shapes scrubbed from upstream text even when they are not our own key
#: (OpenAI ``sk-``/``sk-proj-``, Anthropic ``sk-ant-``, any bearer token echoed back).
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-*.]{4,}|(?i:bearer)\s+\S+")

AuthHeaders = Callable[[str | None], dict[str, str]]


def read_api_key(config: ModelConfig, *, required: bool) -> str | None:
    """The vendor key from the environment variable ``config.api_key_env`` names.

    Keys are never taken from the config file or from requests. A named but unset (or
    empty) variable is a start-up error, not a per-request 401: the operator learns at once.
    """
    problem = api_key_problem(config, required=required)
    if problem is not None:
        raise ConfigError(f"model {config.name!r}: {problem}")
    env = config.api_key_env
    return os.environ[env].strip() if env else None


def api_key_problem(config: ModelConfig, *, required: bool) -> str | None:
    """Why :func:`read_api_key` would fail now, or None (``config check`` reports it)."""
    env = config.api_key_env
    if env is None:
        if required:
            return (
                f"backend {config.backend!r} needs api_key_env "
                "(the name of the environment variable that holds the vendor key)"
            )
        return None
    if not os.environ.get(env, "").strip():
        return f"environment variable {env!r} (api_key_env) is not set"
    return None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI), ``Retry-After`` seconds or a date."""
    millis = headers.get("retry-after-ms")
    if millis:
        with contextlib.suppress(ValueError):
            return max(0.0, float(millis) / 1000.0)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def upstream_message(body: bytes) -> str:
    """The human message inside an OpenAI or Anthropic error body (both use error.message)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return ""


def _is_decoding_error(exc: BaseException) -> bool:
    """Whether a payload error is a body that arrived but cannot be decompressed.

    aiohttp reports both a truncated body and a corrupt gzip/deflate one as
    ``ClientPayloadError``; only the cause, or the message when there is none, tells them apart.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ContentEncodingError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "content-encoding" in str(exc).lower()


class HTTPUpstream:
    """One remote model server: pooled session, key, in-flight count, error mapping."""

    def __init__(
        self,
        config: ModelConfig,
        *,
        vendor: str,
        auth_headers: AuthHeaders,
        key_required: bool,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.vendor = vendor
        self._auth_headers = auth_headers
        self.key_required = key_required
        self._extra_headers = dict(extra_headers or {})
        self._key: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self.in_flight = 0
        # A whole answer is bounded as a whole; a stream only per wait for data, because a
        # long answer may legitimately take minutes. Both bound the wait for a pooled
        # connection (``connect``) and a new TCP/TLS connection (``sock_connect``).
        self._whole_timeout = aiohttp.ClientTimeout(
            total=config.timeout_s,
            connect=config.timeout_s,
            sock_connect=config.connect_timeout_s,
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None,
            connect=config.timeout_s,
            sock_connect=config.connect_timeout_s,
            sock_read=config.timeout_s,
        )
        self._stream_headers = {"accept": "text/event-stream"}

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool. Must run on the loop that will use it (aiohttp binds to it)."""
        if self._session is not None:
            return
        self._key = read_api_key(self.config, required=self.key_required)
        cfg = self.config
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update(self._extra_headers)
        headers.update(self._auth_headers(self._key))
        proxy = cfg.options.get("proxy")
        connector = aiohttp.TCPConnector(
            limit=cfg.max_connections,
            limit_per_host=0,  # one host per model: ``limit`` is the bound
            keepalive_timeout=KEEPALIVE_S,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            timeout=self._stream_timeout,
            # Base URL, proxy and credentials come from the config only: no HTTP_PROXY,
            # no ~/.netrc, no surprises from whatever environment the gateway runs in.
            trust_env=False,
            proxy=str(proxy) if proxy else None,
            # A vendor's cookies would be shared by every client of the gateway; none are
            # kept or sent (and the cookie jar's per-request filtering costs CPU).
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise UpstreamError(
                f"model {self.config.name!r} is not started", code="upstream_not_started"
            )
        return self._session

    def _url(self, path: str) -> URL:
        """``base_url`` + ``path`` (the SDK convention: ``/v1`` in the base is kept), parsed
        once per path rather than once per request."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(str(self.config.base_url).rstrip("/") + path)
        return url

    # -- calls ---------------------------------------------------------------------------

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` and return the decoded JSON object, within ``timeout_s`` overall."""
        session = self._require_session()
        with self._counted(), self._translated():
            async with session.post(
                self._url(path),
                data=orjson.dumps(body),
                allow_redirects=False,
                timeout=self._whole_timeout,
            ) as response:
                content = await self._read_bounded(response)
            if response.status >= 300:
                raise self.error_from_status(response.status, response.headers, content)
            return self.decode_object(content)

    async def _read_bounded(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, refusing to buffer more than any sane completion could be."""
        limit = MAX_RESPONSE_BYTES
        declared = response.content_length
        if declared is not None and declared > limit:
            raise self.protocol_error(f"response larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        # Counted after decompression, so a small gzip bomb is refused too.
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise self.protocol_error(f"response larger than {limit} bytes")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def stream_events(
        self, path: str, body: dict[str, Any]
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST ``body`` and yield its SSE events one by one (see :meth:`stream_batches`)."""
        batches = self.stream_batches(path, body)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for event in batch:
                    yield event

    async def stream_batches(
        self, path: str, body: dict[str, Any]
    ) -> AsyncGenerator[list[SSEEvent], None]:
        """POST ``body`` and yield its SSE events, a list per network read that completed any;
        ``timeout_s`` bounds each wait for data.

        Events are decoded from each chunk as it arrives, never from a buffered body. Ends
        normally only when the server ends the body cleanly; the caller still checks that
        the protocol's own end marker arrived, because a clean close is not a finish.
        Leaving early (``aclose``) closes the connection rather than returning a half-read
        one to the pool.
        """
        session = self._require_session()
        with self._counted(), self._translated():
            async with session.post(
                self._url(path),
                data=orjson.dumps(body),
                headers=self._stream_headers,
                allow_redirects=False,
            ) as response:
                if response.status >= 300:
                    content = await self._read_bounded(response)
                    raise self.error_from_status(response.status, response.headers, content)
                media_type = response.content_type
                if media_type != "text/event-stream":
                    # e.g. a server that ignored ``stream: true`` and sent one JSON body.
                    raise self.protocol_error(f"expected an event stream, got {media_type!r}")
                # ``iter_sse_batches`` inline: one async generator less per stream.
                decoder = SSEDecoder()
                async for chunk in response.content.iter_any():
                    events = decoder.feed(chunk)
                    if events:
                        yield events
                events = decoder.close()
                if events:
                    yield events

    # -- error mapping -------------------------------------------------------------------

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn transport failures into typed errors; the exception text is never echoed.

        Order matters: aiohttp's connect and read timeouts are also connection errors, and
        its connect failures are also ``OSError``.
        """
        name = self.config.name
        try:
            yield
        except UpstreamError:
            raise
        except TimeoutError as exc:
            # asyncio.TimeoutError (total), ServerTimeoutError (sock_read),
            # ConnectionTimeoutError (sock_connect): all "did not answer in time".
            raise self._timeout() from exc
        except aiohttp.ClientConnectorError as exc:
            # Refused, DNS failure, TLS handshake or certificate failure, proxy unreachable.
            log.warning("model %s: cannot connect to upstream (%s)", name, type(exc).__name__)
            raise UpstreamError(
                f"cannot connect to the upstream of model {name!r}",
                retryable=True,
                code="upstream_unreachable",
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            # Either the body was cut short (a drop mid-body) or it could not be decoded.
            if _is_decoding_error(exc):
                raise self.protocol_error("undecodable content-encoding") from exc
            log.warning("model %s: upstream connection lost (%s)", name, type(exc).__name__)
            raise self.connection_lost() from exc
        except (aiohttp.ClientResponseError, HttpProcessingError, SSEDecodeError) as exc:
            # Malformed status line or headers (raise_for_status is off, so a
            # ClientResponseError is never about the HTTP status), or a bad event stream.
            raise self.protocol_error(type(exc).__name__) from exc
        except (aiohttp.ClientError, OSError) as exc:
            # ServerDisconnectedError (dropped before or during the answer), ClientOSError
            # (reset), ClientConnectionResetError: the answer is incomplete and must not
            # pass as whole.
            log.warning("model %s: upstream connection lost (%s)", name, type(exc).__name__)
            raise self.connection_lost() from exc

    def _timeout(self) -> UpstreamTimeout:
        log.warning("model %s: upstream timed out", self.config.name)
        return UpstreamTimeout(
            f"the upstream of model {self.config.name!r} did not answer within "
            f"{self.config.timeout_s:g} s",
            retryable=True,
        )

    def connection_lost(self) -> UpstreamError:
        return UpstreamError(
            f"the upstream of model {self.config.name!r} closed the connection before the "
            "answer was complete",
            retryable=True,
            code="upstream_connection_lost",
        )

    def protocol_error(self, what: str) -> UpstreamError:
        log.warning("model %s: malformed upstream response: %s", self.config.name, what)
        return UpstreamError(
            f"the upstream of model {self.config.name!r} sent a malformed response ({what})",
            retryable=True,
            code="upstream_protocol_error",
        )

    def decode_object(self, raw: bytes | str) -> dict[str, Any]:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise self.protocol_error("invalid JSON") from exc
        if not isinstance(data, dict):
            raise self.protocol_error("expected a JSON object")
        return data

    def sanitise(self, text: str) -> str:
        """Upstream text made safe to show a client: no key, nothing key-shaped, no control
        characters, bounded length."""
        if self._key:
            text = text.replace(self._key, "[redacted]")
        text = _KEY_LIKE.sub("[redacted]", text)
        text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
        if len(text) > MAX_UPSTREAM_MESSAGE_CHARS:
            text = text[:MAX_UPSTREAM_MESSAGE_CHARS] + "…"
        return text

    def error_from_status(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> UpstreamError:
        """The typed error for an HTTP error response from upstream."""
        name = self.config.name
        log.warning("model %s: upstream answered HTTP %d", name, status)
        if status in (401, 403):
            # The vendor's text may quote (part of) our key; say nothing of it.
            return UpstreamError(
                f"the upstream of model {name!r} rejected the gateway's credentials "
                f"(HTTP {status}); check {self.config.api_key_env or 'the vendor key'}",
                retryable=False,
                upstream_status=status,
                code="upstream_auth_failed",
            )
        detail = self.sanitise(upstream_message(body))
        suffix = f": {detail}" if detail else ""
        if status == 429:
            retry_after = parse_retry_after(headers)
            extra = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else {}
            return UpstreamError(
                f"the upstream of model {name!r} is rate limiting the gateway (HTTP 429){suffix}",
                retryable=True,
                upstream_status=429,
                retry_after=retry_after,
                code="upstream_rate_limited",
                headers=extra,
            )
        if status == 529 or status >= 500 or status in (408, 409):
            code = "upstream_overloaded" if status == 529 else "upstream_unavailable"
            return UpstreamError(
                f"the upstream of model {name!r} failed (HTTP {status}){suffix}",
                retryable=True,
                upstream_status=status,
                retry_after=parse_retry_after(headers),
                code=code,
            )
        return UpstreamError(
            f"the upstream of model {name!r} rejected the request (HTTP {status}){suffix}",
            retryable=False,
            upstream_status=status,
            code="upstream_rejected_request",
        )


class RemoteBackend:
    """What every HTTP backend shares: its config, one :class:`HTTPUpstream`, the lifecycle."""

    def __init__(self, config: ModelConfig, http: HTTPUpstream) -> None:
        self.config = config
        self._http = http
        #: Client ``user`` ids reach the vendor only with ``options.forward_user: true``.
        self._forward_user = config.options.get("forward_user", False) is True

    async def start(self) -> None:
        await self._http.start()

    def preflight(self) -> list[tuple[str, str]]:
        """The vendor key's variable must be set (see ``backends.base``: preflight)."""
        problem = api_key_problem(self.config, required=self._http.key_required)
        return [("api_key_env", problem)] if problem else []

    async def aclose(self) -> None:
        await self._http.aclose()

    def queue_depth(self) -> int:
        return self._http.in_flight
