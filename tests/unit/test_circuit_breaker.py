"""nextbest.features.online.CircuitBreaker: known state sequences on a hand-driven clock."""

from __future__ import annotations

from nextbest.features.online import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failed(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.admit()
        breaker.failure()


def test_opens_after_n_consecutive_failures_and_refuses_for_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown_s=2.0, clock=clock)
    failed(breaker, 2)
    assert not breaker.is_open and breaker.retry_after_s() == 0.0
    failed(breaker, 1)
    assert breaker.is_open and not breaker.admit()
    clock.now += 1.5
    assert not breaker.admit() and breaker.retry_after_s() == 0.5


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failures=3, cooldown_s=2.0, clock=Clock())
    failed(breaker, 2)
    assert breaker.admit()
    breaker.success()
    failed(breaker, 2)
    assert not breaker.is_open


def test_after_the_cooldown_one_probe_passes_and_its_success_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown_s=2.0, clock=clock)
    failed(breaker, 1)
    clock.now += 2.0
    assert breaker.admit()  # the probe
    assert not breaker.admit()  # others wait for it
    breaker.success()
    assert not breaker.is_open and breaker.admit() and breaker.admit()


def test_a_failed_probe_reopens_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown_s=2.0, clock=clock)
    failed(breaker, 3)
    clock.now += 2.0
    assert breaker.admit()
    breaker.failure()  # one failure is enough in half-open
    assert not breaker.admit() and breaker.retry_after_s() == 2.0


def test_an_abandoned_probe_lets_the_next_one_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown_s=1.0, clock=clock)
    failed(breaker, 1)
    clock.now += 1.0
    assert breaker.admit()
    breaker.abandon()  # e.g. the request failed for a reason that says nothing about the store
    assert breaker.admit()
