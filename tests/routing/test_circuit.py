"""Circuit breaker state machine, with a clock the test moves."""

from __future__ import annotations

import pytest

from wardgate.routing.circuit import CircuitBreaker, CircuitState, Permit


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, reset_after_s=10.0, clock=clock)


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        permit = breaker.try_acquire()
        assert permit is not None
        breaker.failure(permit)


def test_opens_after_threshold_consecutive_failures(breaker):
    _fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.consecutive_failures == 2
    _fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    assert breaker.try_acquire() is None


def test_success_resets_the_count(breaker):
    _fail(breaker, 2)
    breaker.success(breaker.try_acquire())
    _fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED


def test_half_open_after_reset_lets_exactly_one_trial_through(breaker, clock):
    _fail(breaker, 3)
    clock.now += 9.99
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_after_s() == pytest.approx(0.01)
    clock.now += 0.01
    assert breaker.state is CircuitState.HALF_OPEN
    trial = breaker.try_acquire()
    assert trial == Permit(trial=True)
    assert breaker.try_acquire() is None  # a second caller must not pile on
    breaker.success(trial)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.try_acquire() == Permit(trial=False)


def test_failed_trial_reopens_for_a_full_period(breaker, clock):
    _fail(breaker, 3)
    clock.now += 10
    trial = breaker.try_acquire()
    breaker.failure(trial)
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_after_s() == pytest.approx(10.0)
    clock.now += 10
    assert breaker.try_acquire() == Permit(trial=True)


def test_released_trial_lets_the_next_caller_probe(breaker, clock):
    _fail(breaker, 3)
    clock.now += 10
    trial = breaker.try_acquire()
    breaker.release(trial)  # e.g. the client went away mid-call
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.try_acquire() == Permit(trial=True)


def test_lost_trial_stops_blocking_after_another_period(breaker, clock):
    _fail(breaker, 3)
    clock.now += 10
    assert breaker.try_acquire() is not None  # never reported back
    clock.now += 5
    assert breaker.try_acquire() is None
    clock.now += 5
    assert breaker.try_acquire() == Permit(trial=True)


def test_late_failure_of_a_call_admitted_while_closed_does_not_extend_open(breaker, clock):
    early = breaker.try_acquire()
    _fail(breaker, 3)
    opened_wait = breaker.retry_after_s()
    clock.now += 4
    breaker.failure(early)
    assert breaker.retry_after_s() == pytest.approx(opened_wait - 4)


def test_invalid_settings_are_refused(clock):
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0, reset_after_s=1, clock=clock)
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=1, reset_after_s=0, clock=clock)
