"""Watermark schemes and detection statistics, without a model (fast), plus the llama.cpp
processor's failure modes on the embedded model (fail closed, bounded waits)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from wardgate.backends.llamacpp import LlamaCppBackend
from wardgate.chat import ChatRequest
from wardgate.config import ModelConfig
from wardgate.errors import ConfigError, UpstreamError, UpstreamTimeout
from wardgate.provenance.config import WatermarkConfig
from wardgate.provenance.detect import detect_tokens, score_events
from wardgate.provenance.watermark import SamplerSettings, make_scheme
from wardgate.provenance.wmkey import load_watermark_key

KEY = b"unit-test-key-0123456789abcdef0123456789"
VOCAB = 49152
SCHEMES = ["kgw", "selfhash", "expmin"]


def _generate(scheme_name: str, n: int, rng: np.random.Generator, delta: float = 2.0) -> list[int]:
    """Sample from random 'model' logits through the scheme, as llama.cpp would."""
    scheme = make_scheme(WatermarkConfig(scheme=scheme_name, delta=delta), KEY)
    ids = [int(t) for t in rng.integers(0, VOCAB, 4)]
    sampler = SamplerSettings(temperature=1.0)
    for _ in range(n):
        logits = rng.normal(0, 2.5, VOCAB).astype(np.float32)
        out = scheme.bias(np.array(ids), logits, sampler)
        top = np.argpartition(out, -40)[-40:]
        v = out[top].astype(np.float64)
        p = np.exp(v - v.max())
        ids.append(int(rng.choice(top, p=p / p.sum())))
    return ids[4:]


@pytest.mark.parametrize("name", SCHEMES)
def test_generated_tokens_are_detected_and_random_ones_are_not(name: str) -> None:
    rng = np.random.default_rng(1)
    scheme = make_scheme(WatermarkConfig(scheme=name), KEY)
    marked = detect_tokens(scheme, _generate(name, 150, rng), threshold=4, min_tokens=16)
    assert marked.verdict == "watermarked" and marked.z > 6
    zs = [
        detect_tokens(scheme, list(rng.integers(0, VOCAB, 150)), threshold=4, min_tokens=16).z
        for _ in range(300)
    ]
    # Under the null the statistic is standard normal: none of 300 reaches 4.
    assert max(zs) < 4 and abs(float(np.mean(zs))) < 0.2 and 0.8 < float(np.std(zs)) < 1.2
    # Another key sees nothing.
    other = make_scheme(WatermarkConfig(scheme=name), b"x" * 40)
    assert detect_tokens(other, _generate(name, 150, rng), threshold=4, min_tokens=16).z < 4


def test_expmin_is_distortion_free() -> None:
    """Over the key's randomness (many contexts), each token is drawn with its probability."""
    scheme = make_scheme(WatermarkConfig(scheme="expmin"), KEY)
    logits = np.full(1000, -30.0, dtype=np.float32)  # a small vocabulary keeps this fast
    logits[:4] = np.log([0.5, 0.25, 0.15, 0.10]).astype(np.float32)
    sampler = SamplerSettings(temperature=1.0, min_p=0.0)
    counts = np.zeros(4)
    for i in range(2000):
        out = scheme.bias(np.array([i, i + 1, i + 2, i + 3]), logits, sampler)
        chosen = int(np.argmax(out))
        assert np.isfinite(out).sum() == 1
        counts[chosen] += 1
    freq = counts / counts.sum()
    assert np.allclose(freq, [0.5, 0.25, 0.15, 0.10], atol=0.04), freq


def test_expmin_at_temperature_zero_is_plain_greedy() -> None:
    scheme = make_scheme(WatermarkConfig(scheme="expmin"), KEY)
    logits = np.random.default_rng(3).normal(size=VOCAB).astype(np.float32)
    out = scheme.bias(np.array([1, 2, 3, 4]), logits, SamplerSettings(temperature=0.0))
    assert int(np.argmax(out)) == int(np.argmax(logits))


def test_kgw_biases_only_green_tokens_by_delta() -> None:
    scheme = make_scheme(WatermarkConfig(scheme="kgw", delta=3.0, gamma=0.25), KEY)
    logits = np.zeros(VOCAB, dtype=np.float32)
    out = scheme.bias(np.array([42]), logits, SamplerSettings(temperature=1.0, top_k=0))
    raised = np.flatnonzero(out > 0)
    assert np.allclose(out[raised], 3.0)
    assert 0.23 < raised.size / VOCAB < 0.27
    assert all(scheme.score((42,), int(t)) == 1.0 for t in raised[:50])


def test_repeated_ngrams_are_ignored() -> None:
    scheme = make_scheme(WatermarkConfig(scheme="kgw"), KEY)
    loop = [11, 12, 13, 14, 15] * 60
    result = detect_tokens(scheme, loop, threshold=4, min_tokens=16)
    assert result.tokens_scored == 5 and result.tokens_repeated == 294
    assert result.verdict == "insufficient_tokens"


def test_selfhash_scores_a_token_that_seeds_itself_once_whatever_its_context() -> None:
    # The token with the smallest keyed hash is the min-hash of every window it is in: its green
    # bit, and that of the tokens right after it, is fixed by that one seed. Human text that
    # repeats such a token ("the", ")") must not count each occurrence as new evidence.
    scheme = make_scheme(WatermarkConfig(scheme="selfhash"), KEY)
    pool = np.arange(VOCAB, dtype=np.int64)
    anchor = int(pool[np.argmin(scheme._per_token(pool))])
    fillers = [t for t in range(1000, 1400) if t != anchor]
    text = [t for filler in fillers for t in (anchor, filler)]
    scores, repeated = score_events(scheme, text)
    # Scoring starts after the first `lookback` (3) tokens: anchor, fillers[0], anchor. Then one
    # event for the anchor and one per later filler (each seeded by the anchor's hash); the
    # anchor's other 397 occurrences are repeats.
    assert scheme.lookback == 3
    assert len(scores) == 1 + (len(fillers) - 1) and repeated == len(fillers) - 3
    kgw = make_scheme(WatermarkConfig(scheme="kgw"), KEY)
    # The left-hash seed is the context itself: every (filler, anchor) pair is a new event.
    assert score_events(kgw, text)[1] == 0


def test_an_excerpt_in_a_long_human_text_is_found_and_corrected() -> None:
    rng = np.random.default_rng(5)
    scheme = make_scheme(WatermarkConfig(scheme="kgw"), KEY)
    human = [int(t) for t in rng.integers(0, VOCAB, 1500)]
    tokens = human[:700] + _generate("kgw", 120, rng) + human[700:]
    whole = detect_tokens(scheme, tokens, threshold=4, min_tokens=16, windows="never")
    found = detect_tokens(scheme, tokens, threshold=4, min_tokens=16)
    assert whole.tests == 1 and found.tests > 50
    assert found.best_window is not None and 600 <= found.best_window.start <= 800
    # Bonferroni: the reported p is the best window's times the number of tests.
    assert found.p_corrected == pytest.approx(min(1.0, found.best_window.p_value * found.tests))
    assert found.verdict == "watermarked" and found.z_corrected < found.best_window.z
    plain = detect_tokens(scheme, human, threshold=4, min_tokens=16)
    assert plain.verdict == "not_watermarked" and plain.tests > 50


def test_watermark_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = WatermarkConfig(key_env="WG_TEST_NO_WM_VAR")
    with pytest.raises(ConfigError, match="no watermark key"):
        load_watermark_key(cfg, tmp_path, create=False)
    key = load_watermark_key(cfg, tmp_path, create=True)
    assert stat.S_IMODE((tmp_path / "watermark-key").stat().st_mode) == 0o600
    assert load_watermark_key(cfg, tmp_path, create=False) == key
    os.chmod(tmp_path / "watermark-key", 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_watermark_key(cfg, tmp_path, create=False)
    monkeypatch.setenv("WG_TEST_WM_SHORT", "short")
    with pytest.raises(ConfigError, match="too short"):
        load_watermark_key(WatermarkConfig(key_env="WG_TEST_WM_SHORT"), tmp_path, create=True)


def test_watermark_only_on_llamacpp() -> None:
    with pytest.raises(ValueError, match="llamacpp"):
        ModelConfig(
            name="v", backend="openai", base_url="http://127.0.0.1:1", watermark={"scheme": "kgw"}
        )


class _Failing:
    """A scheme that breaks (or hangs) inside llama.cpp's sampler callback."""

    def __init__(self, real, *, fail_after: int | None = None, hang_after: int | None = None):
        self._real, self._calls = real, 0
        self._fail_after, self._hang_after = fail_after, hang_after
        self.config, self.key_id, self.lookback = real.config, real.key_id, real.lookback

    def bias(self, context, logits, sampler):
        self._calls += 1
        if self._fail_after is not None and self._calls > self._fail_after:
            raise RuntimeError("boom")
        if self._hang_after is not None and self._calls > self._hang_after:
            time.sleep(3.0)
        return self._real.bias(context, logits, sampler)

    def describe(self):
        return self._real.describe()


@pytest.fixture(scope="module")
def backend():
    cfg = ModelConfig(name="smol", n_ctx=256, max_output_tokens=32)
    model = LlamaCppBackend(cfg)
    asyncio.run(model.start())
    yield model
    asyncio.run(model.aclose())


def _request(stream: bool = False) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "smol", "messages": [{"role": "user", "content": "Count to ten."}],
         "max_tokens": 24, "temperature": 0.7, "stream": stream}
    )  # fmt: skip


def test_a_failing_watermark_withholds_the_answer(backend: LlamaCppBackend) -> None:
    real = make_scheme(WatermarkConfig(scheme="kgw"), KEY)
    backend.attach_watermark(_Failing(real, fail_after=3))  # type: ignore[arg-type]
    try:
        with pytest.raises(UpstreamError, match="watermark failed"):
            asyncio.run(backend.complete(_request()))

        async def drain() -> None:
            async for _ in backend.stream(_request(stream=True)):
                pass

        with pytest.raises(UpstreamError, match="watermark failed"):
            asyncio.run(drain())
    finally:
        backend._watermark = None


def test_a_stalled_generation_is_bounded(backend: LlamaCppBackend) -> None:
    real = make_scheme(WatermarkConfig(scheme="kgw"), KEY)
    backend.attach_watermark(_Failing(real, hang_after=2))  # type: ignore[arg-type]
    backend.stall_s = 1.0
    got: list[str] = []

    async def drain() -> None:
        async for delta in backend.stream(_request(stream=True)):
            got.append(delta.text)

    async def stall_then_serve() -> str:
        # One event loop throughout, as in the gateway: the stalled job's turn is handed
        # back on this loop when its worker finally returns.
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await drain()
        assert time.monotonic() - started < 6
        backend._watermark = None
        backend.stall_s = 30.0
        # The worker is still inside the hanging sampler; the next request waits for it
        # (bounded by queue_wait_s) and is then served.
        return (await backend.complete(_request())).text

    # The next request's wait for the turn is not what this test is about: on a loaded
    # machine the stalled worker can take longer than the default 10 s to let go.
    queue_wait = backend.config.queue_wait_s
    backend.config.queue_wait_s = 300.0
    try:
        assert asyncio.run(stall_then_serve())
    finally:
        backend._watermark = None
        backend.stall_s = 30.0
        backend.config.queue_wait_s = queue_wait


@pytest.mark.parametrize("name", SCHEMES)
def test_batch_scoring_equals_token_by_token(name: str) -> None:
    scheme = make_scheme(WatermarkConfig(scheme=name), KEY)
    rng = np.random.default_rng(9)
    tokens = [int(t) for t in rng.integers(0, VOCAB, 200)]
    contexts = [tuple(tokens[i - scheme.lookback : i]) for i in range(scheme.lookback, 200)]
    one = [scheme.score(c, t) for c, t in zip(contexts, tokens[scheme.lookback :], strict=True)]
    assert np.allclose(one, scheme.score_many(contexts, tokens[scheme.lookback :]))
