"""Failover: retries with backoff, then fallbacks, behind a circuit breaker per backend.

For a requested model the plan is the model itself, then its ``fallbacks`` in order. Each
candidate gets ``1 + retries`` attempts under *its own* ``timeout_s`` / ``backoff_s`` /
breaker; the requested model's config alone decides which fallbacks are allowed:

* A retryable :class:`~wardgate.errors.UpstreamError` (429, 5xx, connection error, timeout)
  counts against the breaker and is retried after ``backoff_s * 2**n`` with jitter (half to
  all of it), never sooner than the upstream's ``Retry-After``. A ``Retry-After`` longer than
  ``max_retry_wait_s`` is not waited for: the next fallback is tried instead.
* A non-retryable failure of the *backend* (the vendor refused the gateway's credentials,
  401/403; a local model crashed, no HTTP status) is not retried but counts against the
  breaker and moves on to the next fallback: that backend cannot serve anyone.
* A busy backend (:class:`~wardgate.errors.Overloaded`, its queue is full) is healthy: no
  retry, no breaker count, next fallback; if none serves, the 503 with its Retry-After stands.
  Time queued is not time the backend spent failing: a backend that queues requests itself
  says how long a request may wait for its turn (``queue_wait_s``, the llamacpp backend) and
  answers ``Overloaded`` after that; ``timeout_s`` starts counting only once the turn has come
  (for the wait for an answer or a first chunk, failover allows ``queue_wait_s`` on top).
* The request's own fault — an upstream 4xx rejection, ``ContextLengthExceeded``, any other
  :class:`~wardgate.errors.WardgateError` — is raised at once: sending the same request
  elsewhere would fail the same way, or leak it further.
* A fallback never moves a request from an ``on_prem`` model to a ``vendor`` one unless the
  requested model says ``allow_vendor_fallback: true`` (a model whose deployment is not
  stated counts as ``vendor``); a routing predicate (``allowed``) can narrow the plan
  further, and ``key_scope`` (the models the API key may reach) always does: no fallback
  chain or logical model leads outside it. Skipped candidates are recorded with the reason.

Streams fail over only before their first chunk: once a chunk has reached the client a
failure raises to the caller, which ends the stream with an error event. A stream that ends
without a ``finish_reason`` is an error too, so truncation is never silent. Streams travel
as batches, the deltas that arrived together (a backend's optional ``stream_batches``); the
first chunk is the first batch, and ``timeout_s`` bounds each wait for the next one.

Every step lands in a :class:`RouteTrace` for the audit log, including on failure (pass your
own trace in to keep it when an error is raised).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any, Literal

from wardgate.backends.base import Backend
from wardgate.chat import ChatRequest, Completion, Delta
from wardgate.config import ModelConfig
from wardgate.errors import (
    CircuitOpen,
    ModelNotFound,
    Overloaded,
    RoutingRefused,
    UpstreamError,
    UpstreamTimeout,
    WardgateError,
)
from wardgate.routing.circuit import CircuitBreaker, Clock, Permit, SystemClock
from wardgate.routing.gaps import GapTimer
from wardgate.routing.trace import (
    DETAIL_MID_STREAM,
    DETAIL_RETRY_AFTER_TOO_LONG,
    SKIP_KEY_SCOPE,
    SKIP_NO_BACKEND,
    SKIP_ROUTING,
    SKIP_VENDOR_FALLBACK,
    Attempt,
    RouteTrace,
)


class _Exhausted(Exception):
    """A candidate used up its attempts; failover moves on to the next one."""

    def __init__(self, error: WardgateError) -> None:
        super().__init__(error.message)
        self.error = error


class RoutedStream:
    """Deltas from whichever backend served, plus the trace saying which one that was.

    Iterate it delta by delta, or take :meth:`next_batch` for the deltas that arrived
    together (one network read of a remote backend): the same deltas in the same order.
    """

    def __init__(self, batches: AsyncGenerator[list[Delta], None], trace: RouteTrace) -> None:
        self._batches = batches
        #: Deltas of a batch taken for ``__anext__`` and not handed out yet.
        self._left: list[Delta] = []
        self.trace = trace

    @property
    def served_by(self) -> str | None:
        """Known once the first delta has arrived."""
        return self.trace.served_by

    def __aiter__(self) -> RoutedStream:
        return self

    async def __anext__(self) -> Delta:
        while not self._left:
            self._left = list(reversed(await self._batches.__anext__()))
        return self._left.pop()

    async def next_batch(self) -> list[Delta]:
        """The next deltas that arrived together (never empty); ``StopAsyncIteration`` at
        the end."""
        if self._left:
            batch, self._left = self._left[::-1], []
            return batch
        return await self._batches.__anext__()

    async def aclose(self) -> None:
        """Stop early (client went away); closes the backend's stream too."""
        await self._batches.aclose()


#: One model name, or the routing policy's ordered candidates.
Models = str | Sequence[str]
#: Which models the routing policy allows: a predicate or a set of names.
Allowed = Callable[[str], bool] | Collection[str]
#: The request, or a function giving the request to send to a given model (for example
#: pseudonymised for vendor models only).
Request = ChatRequest | Callable[[str], ChatRequest]
_Step = Literal["raise", "retry", "next"]


class Failover:
    """Serve a model with retries, fallbacks and circuit breakers (see module docstring)."""

    def __init__(
        self,
        backends: Mapping[str, Backend],
        configs: Mapping[str, ModelConfig],
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        max_retry_wait_s: float = 10.0,
    ) -> None:
        self._backends = dict(backends)
        self._configs = dict(configs)
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._max_retry_wait_s = max_retry_wait_s
        self._breakers = {
            name: CircuitBreaker(
                config.circuit_breaker.failure_threshold,
                config.circuit_breaker.reset_after_s,
                self._clock.monotonic,
            )
            for name, config in self._configs.items()
            if name in self._backends
        }

    def circuit_states(self) -> dict[str, str]:
        """``model → closed | open | half_open`` for ``/metrics``."""
        return {name: breaker.state.value for name, breaker in self._breakers.items()}

    def breaker(self, model_name: str) -> CircuitBreaker:
        return self._breakers[model_name]

    def plan(
        self,
        models: Models,
        *,
        allowed: Allowed | None = None,
        trace: RouteTrace | None = None,
        key_scope: Collection[str] | None = None,
    ) -> list[str]:
        """The models that may be tried, in order; skipped ones go into ``trace``.

        ``models`` is one model name, or the routing policy's ordered candidates; each is
        followed by its own config ``fallbacks``, under the vendor rule of the model whose
        fallback it is. Only a single unknown name is an error; unknown candidates in a list
        are skipped (the policy may list models this process failed to load).
        """
        if isinstance(models, str):
            if models not in self._configs:
                raise ModelNotFound(f"the model {models!r} does not exist")
            roots = [models]
        else:
            roots = list(models)
        permitted = _predicate(allowed)
        names: list[str] = []
        skipped: set[tuple[str, str]] = set()
        for root in roots:
            root_config = self._configs.get(root)
            chain = [root, *(root_config.fallbacks if root_config else [])]
            for position, name in enumerate(chain):
                if name in names:
                    continue
                reason = self._skip_reason(
                    root_config, name, permitted, key_scope, is_root=position == 0
                )
                if reason is None:
                    names.append(name)
                elif trace is not None and (name, reason) not in skipped:
                    skipped.add((name, reason))
                    trace.attempts.append(Attempt(name, "skipped", detail=reason))
        return names

    async def complete(
        self,
        models: Models,
        request: Request,
        *,
        trace: RouteTrace | None = None,
        allowed: Allowed | None = None,
        key_scope: Collection[str] | None = None,
    ) -> tuple[Completion, RouteTrace]:
        """The first successful answer along the plan, and how it was obtained.

        Pass the routing decision's allowed set as ``allowed``: config fallbacks are otherwise
        vetted by the vendor rule alone. ``request`` may be a function of the model name when
        some models must get a different request (pseudonymised for vendors); it is called
        once per model tried, and ``trace.served_by`` tells which version was answered.
        """
        trace = trace if trace is not None else RouteTrace(requested=_first(models))
        errors: list[WardgateError] = []
        for name in self.plan(models, allowed=allowed, trace=trace, key_scope=key_scope):
            try:
                completion = await self._complete_on(name, _for(request, name), trace)
            except _Exhausted as exhausted:
                errors.append(exhausted.error)
                continue
            trace.served_by = name
            return completion, trace
        raise _final_error(_first(models), errors)

    def stream(
        self,
        models: Models,
        request: Request,
        *,
        trace: RouteTrace | None = None,
        allowed: Allowed | None = None,
        key_scope: Collection[str] | None = None,
    ) -> RoutedStream:
        """Stream from the first backend that produces a first chunk (see module docstring).

        Nothing runs until the first ``__anext__``; errors before the first chunk (every
        backend down, model unknown) surface there, so the caller can still send a status.
        """
        trace = trace if trace is not None else RouteTrace(requested=_first(models))
        return RoutedStream(self._stream(models, request, trace, allowed, key_scope), trace)

    # -- one candidate --------------------------------------------------------------------

    async def _complete_on(self, name: str, request: ChatRequest, trace: RouteTrace) -> Completion:
        config, backend, breaker = self._configs[name], self._backends[name], self._breakers[name]
        error: WardgateError | None = None
        for attempt in range(config.retries + 1):
            if error is not None:
                await self._clock.sleep(self._backoff(config, attempt, error))
            permit = breaker.try_acquire()
            if permit is None:
                raise _Exhausted(self._circuit_open(name, breaker, trace))
            started = self._clock.monotonic()
            try:
                async with asyncio.timeout(config.timeout_s + _queue_wait_s(backend)):
                    completion = await backend.complete(request)
            except TimeoutError:
                error = _timeout(name, config)
            except WardgateError as exc:
                error = exc
            except BaseException as exc:
                breaker.release(permit)
                self._record(trace, name, started, exc)
                raise
            else:
                breaker.success(permit)
                trace.attempts.append(Attempt(name, "ok", latency_s=self._since(started)))
                return completion
            step = self._failed(trace, name, started, error, permit, attempt, config)
            if step == "raise":
                raise error
            if step == "next":
                raise _Exhausted(error)
        raise AssertionError("unreachable: the last attempt always ends in 'next' or 'raise'")

    async def _stream(
        self,
        models: Models,
        request: Request,
        trace: RouteTrace,
        allowed: Allowed | None,
        key_scope: Collection[str] | None,
    ) -> AsyncGenerator[list[Delta], None]:
        errors: list[WardgateError] = []
        for name in self.plan(models, allowed=allowed, trace=trace, key_scope=key_scope):
            config, backend = self._configs[name], self._backends[name]
            breaker = self._breakers[name]
            model_request = _for(request, name)
            error: WardgateError | None = None
            for attempt in range(config.retries + 1):
                if error is not None:
                    await self._clock.sleep(self._backoff(config, attempt, error))
                permit = breaker.try_acquire()
                if permit is None:
                    errors.append(self._circuit_open(name, breaker, trace))
                    break
                started = self._clock.monotonic()
                batches: AsyncIterator[list[Delta]] | None = None
                try:
                    batches = _batches(backend, model_request)
                    async with asyncio.timeout(config.timeout_s + _queue_wait_s(backend)):
                        first = await _next_batch(batches)
                except StopAsyncIteration:
                    error = UpstreamError(f"model {name!r} ended its stream before any chunk")
                except TimeoutError:
                    error = _timeout(name, config)
                except WardgateError as exc:
                    error = exc
                except BaseException as exc:
                    breaker.release(permit)
                    self._record(trace, name, started, exc)
                    await _close(batches)
                    raise
                else:
                    breaker.success(permit)
                    trace.served_by = name
                    trace.attempts.append(Attempt(name, "ok", latency_s=self._since(started)))
                    committed = self._committed(name, config, batches, first, trace)
                    try:
                        async for batch in committed:
                            yield batch
                    finally:
                        await committed.aclose()
                        await _close(batches)
                    return
                await _close(batches)
                step = self._failed(trace, name, started, error, permit, attempt, config)
                if step == "raise":
                    raise error
                if step == "next":
                    errors.append(error)
                    break
        raise _final_error(_first(models), errors)

    async def _committed(
        self,
        name: str,
        config: ModelConfig,
        batches: AsyncIterator[list[Delta]],
        first: list[Delta],
        trace: RouteTrace,
    ) -> AsyncGenerator[list[Delta], None]:
        """The rest of a stream that has started: failures now go to the caller."""
        finished = _finishes(first)
        yield first
        # The timeout bounds each gap between chunks, not the whole generation.
        gaps = GapTimer(config.timeout_s)
        try:
            while True:
                started = self._clock.monotonic()
                try:
                    batch = await gaps.wait(_next_batch(batches))
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    error: UpstreamError = _timeout(name, config)
                except UpstreamError as exc:
                    error = exc
                except BaseException as exc:
                    self._record(trace, name, started, exc, detail=DETAIL_MID_STREAM)
                    raise
                else:
                    finished = finished or _finishes(batch)
                    yield batch
                    continue
                if _kind(error) in ("retryable", "backend"):
                    self._breakers[name].failure()
                self._record(trace, name, started, error, detail=DETAIL_MID_STREAM)
                raise error
        finally:
            gaps.close()
        if not finished:
            error = UpstreamError(
                f"model {name!r} ended its stream without a finish_reason", retryable=False
            )
            self._record(trace, name, started, error, detail=DETAIL_MID_STREAM)
            raise error

    # -- helpers ----------------------------------------------------------------------------

    def _failed(
        self,
        trace: RouteTrace,
        name: str,
        started: float,
        error: WardgateError,
        permit: Permit,
        attempt: int,
        config: ModelConfig,
    ) -> _Step:
        """Record a failed call, settle the breaker and say what comes next."""
        kind, breaker = _kind(error), self._breakers[name]
        if kind in ("request", "busy"):
            # The backend answered (or is merely full): no verdict on its health.
            breaker.release(permit)
            self._record(trace, name, started, error)
            return "raise" if kind == "request" else "next"
        breaker.failure(permit)
        if kind == "backend" or attempt >= config.retries:
            self._record(trace, name, started, error)
            return "next"
        if _retry_after(error) > self._max_retry_wait_s:
            self._record(trace, name, started, error, detail=DETAIL_RETRY_AFTER_TOO_LONG)
            return "next"
        self._record(trace, name, started, error)
        return "retry"

    def _backoff(self, config: ModelConfig, attempt: int, error: WardgateError) -> float:
        base = min(config.backoff_s * 2 ** (attempt - 1), self._max_retry_wait_s)
        delay = base * (0.5 + 0.5 * self._rng.random())
        return max(delay, _retry_after(error))

    def _circuit_open(self, name: str, breaker: CircuitBreaker, trace: RouteTrace) -> CircuitOpen:
        trace.attempts.append(Attempt(name, "circuit_open", error_code=CircuitOpen.code))
        wait = breaker.retry_after_s()
        return CircuitOpen(
            f"model {name!r} is failing; its circuit breaker is open",
            retry_after=wait,
            headers={"retry-after": str(max(1, math.ceil(wait)))},
        )

    def _record(
        self,
        trace: RouteTrace,
        name: str,
        started: float,
        error: BaseException,
        *,
        detail: str | None = None,
    ) -> None:
        if isinstance(error, asyncio.CancelledError):
            code = "cancelled"
        elif isinstance(error, WardgateError):
            code = error.code
        else:
            code = "internal_error"
        status = error.upstream_status if isinstance(error, UpstreamError) else None
        latency = self._since(started)
        trace.attempts.append(
            Attempt(name, "error", code, latency, upstream_status=status, detail=detail)
        )

    def _since(self, started: float) -> float:
        return max(0.0, self._clock.monotonic() - started)

    def _skip_reason(
        self,
        root: ModelConfig | None,
        name: str,
        permitted: Callable[[str], bool] | None,
        key_scope: Collection[str] | None,
        *,
        is_root: bool,
    ) -> str | None:
        candidate = self._configs.get(name)
        if root is None or candidate is None or name not in self._backends:
            return SKIP_NO_BACKEND
        if key_scope is not None and name not in key_scope:
            return SKIP_KEY_SCOPE
        if permitted is not None and not permitted(name):
            return SKIP_ROUTING
        if (
            not is_root
            and root.deployment == "on_prem"
            and candidate.deployment != "on_prem"
            and not root.allow_vendor_fallback
        ):
            return SKIP_VENDOR_FALLBACK
        return None


_Kind = Literal["retryable", "backend", "busy", "request"]


def _kind(error: WardgateError) -> _Kind:
    """What a failure says: worth retrying, this backend is broken, busy, or a bad request."""
    if isinstance(error, UpstreamError):
        if error.retryable:
            return "retryable"
        if error.upstream_status is None or error.upstream_status in (401, 403):
            return "backend"
        return "request"
    if isinstance(error, Overloaded):
        return "busy"
    return "request"


def _queue_wait_s(backend: Backend) -> float:
    """How long ``backend`` may keep a request queued before its turn (0: it does not queue)."""
    wait = getattr(backend, "queue_wait_s", 0.0)
    return float(wait) if isinstance(wait, int | float) else 0.0


def _retry_after(error: WardgateError) -> float:
    if isinstance(error, UpstreamError) and error.retry_after is not None:
        return error.retry_after
    return 0.0


def _for(request: Request, model_name: str) -> ChatRequest:
    return request if isinstance(request, ChatRequest) else request(model_name)


def _first(models: Models) -> str:
    if isinstance(models, str):
        return models
    return models[0] if models else ""


def _predicate(allowed: Allowed | None) -> Callable[[str], bool] | None:
    if allowed is None or callable(allowed):
        return allowed
    names = frozenset([allowed] if isinstance(allowed, str) else allowed)
    return names.__contains__


def _timeout(name: str, config: ModelConfig) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"model {name!r} did not answer within {config.timeout_s:g} s", retryable=True
    )


def _final_error(model_name: str, errors: list[WardgateError]) -> WardgateError:
    """The error to show when every candidate failed: the last real failure wins over
    circuit-open refusals, which say less about what went wrong."""
    for error in reversed(errors):
        if not isinstance(error, CircuitOpen):
            return error
    if errors:
        return errors[-1]
    return RoutingRefused(f"no allowed backend can serve the model {model_name!r}")


async def _close(stream: AsyncIterator[Any] | None) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _batches(backend: Backend, request: ChatRequest) -> AsyncIterator[list[Delta]]:
    """The backend's stream as lists of deltas that arrived together: its own
    ``stream_batches`` when it has one (see ``backends.base``), else one delta a list."""
    stream_batches = getattr(backend, "stream_batches", None)
    if stream_batches is not None:
        batches: AsyncIterator[list[Delta]] = stream_batches(request)
        return batches
    return _singles(backend.stream(request))


async def _singles(deltas: AsyncIterator[Delta]) -> AsyncGenerator[list[Delta], None]:
    try:
        async for delta in deltas:
            yield [delta]
    finally:
        await _close(deltas)


async def _next_batch(batches: AsyncIterator[list[Delta]]) -> list[Delta]:
    """The next non-empty batch (a backend may hand out an empty list); raises
    ``StopAsyncIteration`` at the end."""
    while True:
        batch = await anext(batches)
        if batch:
            return batch


def _finishes(batch: list[Delta]) -> bool:
    return any(delta.finish_reason is not None for delta in batch)
