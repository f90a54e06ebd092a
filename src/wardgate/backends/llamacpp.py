"""Local GGUF models through llama-cpp-python.

A llama.cpp context is not thread-safe, so each loaded model owns one worker thread and every
request for it is serialised there. In front of that thread sits a bounded queue, bounded in
two ways, and both refusals are :class:`~wardgate.errors.Overloaded` (503 + Retry-After), never
a hang and never a failure of the model:

* by count: when ``queue_size`` requests are already waiting, the next one is refused at once
  (also when the requests ahead would, at recent speeds, take longer than ``queue_wait_s``);
* by time: a request that has not started after ``queue_wait_s`` leaves the queue.

``timeout_s`` counts from the moment a request's generation starts, never from when it
joined the queue, and it is enforced on the worker between tokens, so a request that runs
out of time really stops instead of holding the model for the requests behind it. Failover
learns the queue bound from :attr:`LlamaCppBackend.queue_wait_s` and waits that much longer.

Generation runs off the event loop; streamed tokens cross back with ``call_soon_threadsafe``,
and a client that disconnects sets a flag the worker checks between tokens, so abandoned
requests stop burning the CPU.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from wardgate.backends import local_tools
from wardgate.backends.base import output_token_limit
from wardgate.backends.chat_template import CHATML_TEMPLATE, ChatTemplate
from wardgate.backends.stops import StopMatcher
from wardgate.chat import ChatRequest, Completion, Delta, FinishReason, ToolCallDelta, Usage
from wardgate.config import ModelConfig
from wardgate.embedded import embedded_model_path
from wardgate.errors import (
    ConfigError,
    ContextLengthExceeded,
    InvalidRequest,
    Overloaded,
    UpstreamError,
    UpstreamTimeout,
    WardgateError,
)
from wardgate.provenance.watermark import SamplerSettings, Scheme

log = logging.getLogger(__name__)

_DEFAULT_TEMPERATURE = 0.7
#: llama.cpp's sampler defaults, passed explicitly: ``expmin`` reproduces this chain.
_TOP_K = 40
_MIN_P = 0.05
#: Seconds a running generation may go without producing a token before the request fails
#: (bounded waits: a wedged generation must not hold a client forever). Generous, because
#: on an overloaded machine a grammar-constrained token was seen to take over 30 s; the
#: request's own ``timeout_s`` still bounds the whole answer.
_STALL_S = 120.0
_DONE = object()
#: A grammar-made call is streamed after it is complete, in fragments of this many characters.
_ARGUMENT_FRAGMENT_CHARS = 16


@dataclass(slots=True)
class _Job:
    """One generation, prepared on the event loop and run on the worker thread."""

    prompt: str
    max_tokens: int | None
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    cancelled: threading.Event
    #: Monotonic time of the worker's last sign of life (start, each token); 0 until started.
    progress: float = 0.0
    #: Set by a failing watermark processor: the answer must not go out unwatermarked.
    watermark_error: BaseException | None = None
    #: Tool calling / JSON answers (see ``backends.local_tools``).
    mode: local_tools.ToolMode = "text"
    grammar: Any = None
    tool_names: tuple[str, ...] = ()


class LlamaCppBackend:
    """A GGUF model served by llama.cpp in-process."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"llama-{config.name}"
        )
        self._admitted = 0
        #: The job the worker took last; the worker is free once it is done. The queue
        #: proper: waiters are woken in arrival order (see :meth:`_submit`).
        self._running: concurrent.futures.Future[Any] | None = None
        self._llm: Any = None
        self._template: ChatTemplate | None = None
        self._model_file: contextlib.ExitStack | None = None
        #: Rough seconds per queued request, for Retry-After; refined as requests finish.
        self._seconds_per_request = 1.0
        #: The weights as checked at load, for receipts (``weights_provenance``).
        self._weights: dict[str, Any] | None = None
        self._watermark: Scheme | None = None
        self.stall_s = _STALL_S
        self._measured = False

    @property
    def queue_wait_s(self) -> float:
        """The longest a request waits for its turn (read by failover; see module doc)."""
        return self.config.queue_wait_s

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)

    def preflight(self) -> list[tuple[str, str]]:
        """What would stop :meth:`start`, found without loading or hashing the weights: the
        file, the ``verify:`` settings and the chat template (see ``backends.base``)."""
        from wardgate.supplychain.verify_load import verify_problems

        try:
            source = Path(self.config.path) if self.config.path else embedded_model_path()
        except ConfigError as exc:
            return [("path", exc.message)]
        if not source.is_file():
            return [("path", f"weights file not found: {source}")]
        verify = verify_problems(source, self.config.verify)
        problems = [(f"verify.{field}", text) for field, text in verify]
        if self.config.chat_template:
            try:
                ChatTemplate(self.config.chat_template, bos_token="", eos_token="")
            except ConfigError as exc:
                problems.append(("chat_template", exc.message))
        return problems

    def _load(self) -> None:
        from llama_cpp import Llama

        from wardgate.supplychain.verify_load import prepare_model_file

        source = Path(self.config.path) if self.config.path else embedded_model_path()
        if not source.is_file():
            raise WardgateError(
                f"model {self.config.name!r}: weights file not found: {source}", code="config_error"
            )
        stack = contextlib.ExitStack()
        try:
            # Verifies the pinned digest / signature and decrypts to tmpfs when needed.
            verify = self.config.verify
            path = stack.enter_context(
                prepare_model_file(
                    source,
                    verify,
                    template_policy=verify.template_audit,
                    pinned_template_sha256=verify.chat_template_sha256,
                )
            )
            self._weights = _weights_record(path, verify.sha256, verify.signature)
            self._llm = Llama(
                model_path=str(path),
                n_ctx=self.config.n_ctx,
                n_threads=self.config.n_threads,
                verbose=False,
            )
        except BaseException:
            stack.close()
            raise
        self._model_file = stack
        metadata: dict[str, str] = dict(self._llm.metadata or {})
        source_template = (
            self.config.chat_template or metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        )
        self._template = ChatTemplate(
            source_template,
            bos_token=self._token_text(self._llm.token_bos()),
            eos_token=self._token_text(self._llm.token_eos()),
        )

    def attach_watermark(self, scheme: Scheme) -> None:
        """Watermark every answer from now on (the gateway attaches the configured scheme)."""
        self._watermark = scheme

    def watermark_parameters(self) -> dict[str, Any] | None:
        return self._watermark.describe() if self._watermark is not None else None

    def weights_provenance(self) -> dict[str, Any] | None:
        """The loaded file's SHA-256 and how it was checked (``pinned`` against
        ``verify.sha256``, or only ``hashed_at_load``), for receipts."""
        return self._weights

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        piece: bytes = self._llm.detokenize([token], special=True)
        return piece.decode("utf-8", errors="ignore")

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._llm is not None:
            self._llm.close()
            self._llm = None
        if self._model_file is not None:
            self._model_file.close()
            self._model_file = None

    def queue_depth(self) -> int:
        return self._admitted

    # -- requests ------------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        job = self._prepare(request)
        with self._admission():
            future = await self._submit(job, self._generate, None)
            try:
                while True:
                    done, _ = await asyncio.wait({future}, timeout=1.0)
                    if done:
                        return _with_tool_calls(job, future.result())
                    self._check_stall(job)
            finally:
                job.cancelled.set()  # timed out or cancelled by the caller: stop generating

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        job = self._prepare(request)
        with self._admission():
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[object] = asyncio.Queue()

            def emit(item: object) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            future = await self._submit(job, self._run_streaming, emit)
            try:
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout=1.0)
                    except TimeoutError:
                        self._check_stall(job)
                        continue
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    assert isinstance(item, Delta)
                    yield item
                await future
            finally:
                # Client went away or a guard stopped the stream: stop generating.
                job.cancelled.set()

    def _check_stall(self, job: _Job) -> None:
        """Fail a started generation that has produced nothing for ``stall_s`` seconds."""
        if job.progress and time.monotonic() - job.progress > self.stall_s:
            job.cancelled.set()
            log.error("model %s: generation stalled for %.0f s", self.config.name, self.stall_s)
            raise UpstreamTimeout(
                f"model {self.config.name!r} stopped producing tokens", retryable=False
            )

    @contextlib.contextmanager
    def _admission(self) -> Iterator[None]:
        # One running + queue_size waiting; beyond that refuse immediately (never hang). So
        # too when the requests waiting ahead would, at recent speed, outlast queue_wait_s:
        # this one could not start in time, so it should not wait to learn that.
        waiting_ahead = max(0, self._admitted - 1)
        if self._admitted > self.config.queue_size or (
            self._measured and waiting_ahead * self._seconds_per_request > self.queue_wait_s
        ):
            raise self._busy()
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    def _busy(self) -> Overloaded:
        retry = max(1, math.ceil(self._admitted * self._seconds_per_request))
        return Overloaded(
            f"model {self.config.name!r} is busy; retry later",
            headers={"Retry-After": str(retry)},
        )

    async def _submit(
        self, job: _Job, work: Callable[..., Any], emit: Callable[[object], None] | None
    ) -> asyncio.Future[Any]:
        """Wait (at most ``queue_wait_s``) for this job's turn, then hand it to the worker.

        The turn comes when the job the worker took last is done, read from that job's
        concurrent future, which the worker thread itself completes: nothing has to be handed
        back through an event loop. (An asyncio.Lock released from a done callback stayed
        taken for good when the loop that was to run the release closed first: a caller gone
        while its job still ran, or a test that runs each request in its own loop.) A caller
        that gives up sets ``job.cancelled`` and the worker stops the job at its next token.
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.queue_wait_s):
                # Waiters wake in the order they began waiting, and the first to run takes the
                # worker; the others see the new job and wait for it in the same order.
                while (running := self._running) is not None and not running.done():
                    await _finished(running, loop)
        except TimeoutError:
            raise self._busy() from None
        done = self._executor.submit(work, job, emit)
        self._running = done
        future = asyncio.wrap_future(done, loop=loop)
        future.add_done_callback(_read_exception)
        return future

    def _prepare(self, request: ChatRequest) -> _Job:
        if self._llm is None or self._template is None:
            raise UpstreamError(f"model {self.config.name!r} is not loaded", retryable=True)
        limit = output_token_limit(self.config, request)
        temperature = request.temperature
        if temperature is None:
            temperature = float(self.config.options.get("temperature", _DEFAULT_TEMPERATURE))
        plan = local_tools.plan(request)
        grammar = None
        if plan.schema is not None:
            try:
                grammar = local_tools.grammar_for(orjson.dumps(plan.schema).decode())
            except Exception as exc:  # llama.cpp's converter raises ValueError, KeyError, ...
                raise InvalidRequest(
                    "this JSON Schema cannot be turned into a grammar for a local model",
                    param="response_format" if plan.mode == "json" else "tools",
                    code="unsupported_schema",
                ) from exc
        return _Job(
            prompt=self._template.render(
                local_tools.with_system(list(request.messages), plan.system_addition)
            ),
            max_tokens=limit,
            temperature=temperature,
            top_p=request.top_p if request.top_p is not None else 1.0,
            stop=request.stop_list,
            seed=request.seed,
            cancelled=threading.Event(),
            mode=plan.mode,
            grammar=grammar,
            tool_names=tuple(request.tool_names),
        )

    # -- worker thread -------------------------------------------------------------------

    def _tokens_for(self, job: _Job) -> list[int]:
        tokens: list[int] = self._llm.tokenize(
            job.prompt.encode("utf-8"), add_bos=True, special=True
        )
        n_ctx = self.config.n_ctx
        if len(tokens) >= n_ctx:
            raise ContextLengthExceeded(
                f"the prompt is {len(tokens)} tokens; this model's context is {n_ctx} tokens",
                param="messages",
            )
        return tokens

    def _generate(self, job: _Job, on_delta: Callable[[Delta], None] | None) -> Completion:
        """Runs on the worker thread: the only place that touches the llama.cpp context."""
        started = time.perf_counter()
        if job.cancelled.is_set():  # its caller gave up while it waited
            return Completion(text="", finish_reason="stop", usage=Usage())
        # A whole answer must be done within timeout_s of starting (streams are bounded per
        # token by failover instead); checked here, so an overdue job frees the worker.
        deadline = started + self.config.timeout_s if on_delta is None else math.inf
        tokens = self._tokens_for(job)
        max_tokens = min(job.max_tokens or self.config.n_ctx, self.config.n_ctx - len(tokens))
        pieces: list[str] = []
        finish: FinishReason = "length"
        # Stop sequences are matched here, not by llama.cpp, which would not say which one
        # ended the answer (the Messages API reports it).
        stops = StopMatcher(job.stop) if job.stop else None
        # Forget the previous prompt's KV cache: reusing a shared prefix evaluates the prompt in
        # different batch shapes, which changes the numerics, so the same seed and temperature 0
        # could give different answers. Reproducibility matters more here (red-team repeats).
        self._llm.reset()
        job.progress = time.monotonic()
        try:
            chunks = self._llm.create_completion(
                prompt=tokens,
                max_tokens=max_tokens,
                temperature=job.temperature,
                top_p=job.top_p,
                top_k=_TOP_K,
                min_p=_MIN_P,
                stop=None,
                seed=job.seed,
                stream=True,
                grammar=job.grammar,
                logits_processor=self._processors(job),
            )
            for chunk in chunks:
                job.progress = time.monotonic()
                if job.watermark_error is not None:
                    raise UpstreamError(
                        f"model {self.config.name!r}: the watermark failed; answer withheld",
                        retryable=False,
                    ) from job.watermark_error
                if job.cancelled.is_set():
                    finish = "stop"
                    break
                if time.perf_counter() > deadline:
                    raise UpstreamTimeout(
                        f"model {self.config.name!r} did not finish within "
                        f"{self.config.timeout_s:g} s",
                        retryable=True,
                    )
                choice = chunk["choices"][0]
                text: str = choice.get("text") or ""
                if stops is not None:
                    text = stops.feed(text)
                if text:
                    pieces.append(text)
                    if on_delta is not None:
                        on_delta(Delta(text=text))
                if stops is not None and stops.matched is not None:
                    finish = "stop"
                    break  # closing the generator stops llama.cpp
                if choice.get("finish_reason"):
                    finish = "length" if choice["finish_reason"] == "length" else "stop"
            if stops is not None and stops.matched is None:
                tail = stops.finish()
                if tail:
                    pieces.append(tail)
                    if on_delta is not None:
                        on_delta(Delta(text=tail))
        except WardgateError:
            raise
        except Exception as exc:  # llama.cpp decode failures surface as RuntimeError etc.
            log.error("model %s: generation failed: %s", self.config.name, type(exc).__name__)
            raise UpstreamError(
                f"model {self.config.name!r} failed while generating", retryable=False
            ) from exc
        if job.watermark_error is not None:
            raise UpstreamError(
                f"model {self.config.name!r}: the watermark failed; answer withheld",
                retryable=False,
            ) from job.watermark_error
        text_out = "".join(pieces)
        completion_tokens = (
            len(self._llm.tokenize(text_out.encode("utf-8"), add_bos=False, special=True))
            if text_out
            else 0
        )
        elapsed = time.perf_counter() - started
        if job.cancelled.is_set():
            pass  # cut short: says nothing about how long a request takes
        elif self._measured:
            self._seconds_per_request = 0.8 * self._seconds_per_request + 0.2 * elapsed
        else:
            self._seconds_per_request, self._measured = elapsed, True
        return Completion(
            text=text_out,
            finish_reason=finish,
            usage=Usage(prompt_tokens=len(tokens), completion_tokens=completion_tokens),
            stop_sequence=stops.matched if stops is not None else None,
        )

    def _processors(self, job: _Job) -> Any:
        if self._watermark is None:
            return None
        if job.grammar is not None and self._watermark.config.scheme == "expmin":
            # expmin keeps a single token, which a grammar may reject: structured answers
            # (tool calls, JSON) from an expmin model go out unwatermarked.
            return None
        from llama_cpp import LogitsProcessorList

        return LogitsProcessorList([_WatermarkProcessor(self._watermark, job, self._llm.n_vocab())])

    def _run_streaming(self, job: _Job, emit: Callable[[object], None]) -> None:
        try:
            gate = _AutoGate(emit) if job.mode == "auto" else None
            on_delta: Callable[[Delta], None] | None = emit
            if job.mode == "forced":
                on_delta = None  # the answer is a call, sent whole when it is complete
            elif gate is not None:
                on_delta = gate.feed
            completion = _with_tool_calls(job, self._generate(job, on_delta))
            if gate is not None and not completion.tool_calls:
                gate.flush()
            for index, call in enumerate(completion.tool_calls):
                emit(Delta(tool_calls=[ToolCallDelta(index, id=call.id, name=call.name)]))
                for start in range(0, len(call.arguments), _ARGUMENT_FRAGMENT_CHARS):
                    piece = call.arguments[start : start + _ARGUMENT_FRAGMENT_CHARS]
                    emit(Delta(tool_calls=[ToolCallDelta(index, arguments=piece)]))
            emit(Delta(finish_reason=completion.finish_reason, usage=completion.usage,
                       stop_sequence=completion.stop_sequence))
        except BaseException as exc:
            emit(exc)
        finally:
            emit(_DONE)


def _weights_record(path: Path, pinned: str | None, signature: str | None) -> dict[str, Any]:
    """What a receipt states about the weights: the pinned digest when the load verified one
    (``prepare_model_file`` refuses a mismatch), else the digest of the file actually loaded."""
    record: dict[str, Any]
    if pinned:
        record = {"sha256": pinned.lower(), "check": "pinned"}
    else:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        record = {"sha256": digest, "check": "hashed_at_load"}
    if signature:
        record["signature"] = "verified"
    record["file"] = path.name
    return record


class _WatermarkProcessor:
    """A llama.cpp logits processor applying one scheme to one job's generation.

    It runs inside llama.cpp's sampler callback, where an exception would be lost: failures
    are recorded on the job (which then withholds the answer) and the generation is cancelled.
    """

    def __init__(self, scheme: Scheme, job: _Job, n_vocab: int) -> None:
        self._scheme = scheme
        self._job = job
        self._n_vocab = n_vocab
        self._sampler = SamplerSettings(
            temperature=job.temperature, top_p=job.top_p, top_k=_TOP_K, min_p=_MIN_P
        )

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        try:
            if scores.shape[0] != self._n_vocab:
                raise ValueError(f"{scores.shape[0]} logits for a {self._n_vocab}-token vocabulary")
            return self._scheme.bias(input_ids, scores, self._sampler)
        except Exception as exc:
            self._job.watermark_error = exc
            self._job.cancelled.set()
            return scores


class _AutoGate:
    """Streams a ``tool_choice: auto`` answer as text unless it opens a ``<tool_call>``:
    those few characters are held until they decide which it is."""

    def __init__(self, emit: Callable[[object], None]) -> None:
        self._emit = emit
        self._held = ""
        self._passing = False

    def feed(self, delta: Delta) -> None:
        if self._passing:
            self._emit(delta)
            return
        self._held += delta.text
        if not local_tools.may_be_tool_call(self._held):
            self.flush()

    def flush(self) -> None:
        if not self._passing and self._held:
            self._emit(Delta(text=self._held))
        self._passing = True


def _with_tool_calls(job: _Job, completion: Completion) -> Completion:
    """Turn a tool-mode answer into tool calls (text stays text when it is none)."""
    if job.mode == "forced":
        call = local_tools.parse_forced(completion.text)
    elif job.mode == "auto":
        call = local_tools.parse_auto(completion.text, list(job.tool_names))
    else:
        return completion
    if call is None:
        return completion  # cut short by max_tokens (forced) or a plain answer (auto)
    return Completion(
        text="", finish_reason="tool_calls", usage=completion.usage, tool_calls=[call]
    )


def _read_exception(future: asyncio.Future[Any]) -> None:
    """A caller that gave up never reads its job's exception: not "never retrieved"."""
    if not future.cancelled():
        future.exception()


def _finished(done: concurrent.futures.Future[Any], loop: asyncio.AbstractEventLoop
              ) -> asyncio.Future[None]:
    """A future of ``loop`` resolved when ``done`` is; cancelling it leaves ``done`` alone
    (``asyncio.wrap_future`` would cancel a job that has not started yet)."""
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object) -> None:
        with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits on it
            loop.call_soon_threadsafe(_resolve, waiter)

    done.add_done_callback(wake)
    return waiter


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
