"""The per-key refresh grid: bindings sharing a read refresh together, keys spread out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appinfra.providers.schedule import next_refresh, phase

INTERVAL = 120.0
T0 = 1_800_000_000.0


def test_bindings_served_one_read_refresh_at_the_same_moment() -> None:
    # Ten bindings of one key were served the read made at T0, and synced over 40 s.
    times = {next_refresh("vault", "app/db", INTERVAL, T0, T0 + lag) for lag in range(0, 40, 4)}
    assert len(times) == 1


def test_separate_reads_of_one_key_land_on_one_grid() -> None:
    # Two groups read the key 70 s apart (no sharing); after one refresh each they coincide.
    a = next_refresh("vault", "app/db", INTERVAL, T0, T0)
    b = next_refresh("vault", "app/db", INTERVAL, T0 + 70, T0 + 70)
    steps = (b - a) / INTERVAL
    assert steps == pytest.approx(round(steps)) and round(steps) in (0, 1)
    # Group A's second refresh is group B's first (or they share the first already).
    assert b in (a, next_refresh("vault", "app/db", INTERVAL, a, a))


@given(
    read_at=st.floats(min_value=T0, max_value=T0 + 1e6),
    interval=st.floats(min_value=1, max_value=86400),
)
def test_next_refresh_is_half_to_one_and_a_half_intervals_after_the_read(
    read_at: float, interval: float
) -> None:
    at = next_refresh("vault", "app/db", interval, read_at, read_at)
    assert read_at + interval / 2 - 1e-6 <= at < read_at + 1.5 * interval + 1e-6
    # on the key's grid
    steps = (at - phase("vault", "app/db", interval)) / interval
    assert steps == pytest.approx(round(steps), abs=1e-6)


def test_a_late_sync_refreshes_at_the_next_grid_point_not_in_the_past() -> None:
    late = T0 + 10 * INTERVAL  # a backlog: the read was long ago
    at = next_refresh("vault", "app/db", INTERVAL, T0, late)
    assert late <= at < late + INTERVAL


def test_keys_spread_over_the_interval() -> None:
    phases = sorted(phase("vault", f"app/key-{i}", INTERVAL) for i in range(100))
    assert all(0 <= p < INTERVAL for p in phases)
    # 100 keys in 10 buckets of 12 s: none empty, none holding a third of them
    buckets = [sum(1 for p in phases if b * 12 <= p < (b + 1) * 12) for b in range(10)]
    assert min(buckets) > 0 and max(buckets) < 34
    assert phase("vault", "app/key-1", INTERVAL) != phase("aws", "app/key-1", INTERVAL)


def test_phase_is_the_same_in_every_process() -> None:
    # Not hash(): a restart (another PYTHONHASHSEED) must not move a key's refreshes.
    code = "from appinfra.providers.schedule import phase; print(phase('vault', 'app/db', 3600))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }  # fmt: skip
    assert seen == {repr(phase("vault", "app/db", 3600))}


def test_rejects_a_zero_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        next_refresh("vault", "app/db", 0, T0, T0)
