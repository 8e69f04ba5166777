"""topology.pace: the sleep between probe rounds (pure logic)."""

from __future__ import annotations

import time

import pytest

from topology.pace import Pace


def make(window: float = 1.0) -> Pace:
    return Pace(interval=1.0, fast_interval=0.02, burst_interval=0.004, burst_window=window)


def test_healthy_sleeps_the_interval_even_during_an_episode() -> None:
    pace = make()
    assert pace.pause(fast=False) == 1.0
    pace.failing()
    assert pace.pause(fast=False) == 1.0


def test_fast_without_an_episode_sleeps_the_fast_interval() -> None:
    assert make().pause(fast=True) == 0.02  # e.g. no primary at start-up


def test_an_episode_bursts_with_jitter_within_its_window() -> None:
    pace = make()
    pace.failing()
    pauses = [pace.pause(fast=True) for _ in range(500)]
    assert all(0.002 <= p <= 0.006 for p in pauses)
    assert len(set(pauses)) > 100  # jittered, not one fixed phase for a fleet


def test_the_burst_ends_with_its_window() -> None:
    pace = make()
    pace.failing(now=time.monotonic() - 1.5)
    assert not pace.bursting()
    assert pace.pause(fast=True) == 0.02


def test_more_reports_never_extend_the_burst() -> None:
    pace = make()
    started = time.monotonic() - 0.9
    pace.failing(now=started)
    for _ in range(100):
        pace.failing()  # a flood of failing requests
    assert pace.episode_started == started
    assert not pace.bursting(now=started + 1.0)


def test_settled_ends_the_episode_and_the_next_one_bursts_again() -> None:
    pace = make()
    pace.failing(now=time.monotonic() - 5)
    pace.settled()
    pace.failing()
    assert pace.bursting()


@pytest.mark.parametrize(
    ("window", "expected"),
    [(0.0, 0), (1.0, 450), (0.5, 225)],  # 1 s / 2 ms shortest pause - 1 s / 20 ms
)
def test_worst_case_extra_rounds(window: float, expected: int) -> None:
    assert make(window).worst_case_extra_rounds() == expected


def test_burst_interval_never_exceeds_the_fast_interval() -> None:
    pace = Pace(interval=1.0, fast_interval=0.01, burst_interval=0.05, burst_window=1.0)
    assert pace.burst_interval == 0.01


def test_jitter_spreads_the_healthy_interval_and_nothing_else() -> None:
    pace = Pace(interval=10.0, fast_interval=0.02, burst_interval=0.004, burst_window=3.0,
                jitter=0.2)  # fmt: skip
    pauses = [pace.pause(fast=False) for _ in range(200)]
    assert all(8.0 <= p <= 12.0 for p in pauses)
    assert len(set(pauses)) > 100  # spread, not one value
    assert pace.pause(fast=True) <= 0.02
    assert make(3.0).pause(fast=False) == 1.0  # no jitter unless asked
