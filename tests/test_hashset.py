from __future__ import annotations

import random

from veobatch.hashset import HashSet


def test_add_reports_what_was_there_already() -> None:
    seen = HashSet(capacity=4)
    assert seen.add(hash("a"))
    assert not seen.add(hash("a"))
    assert hash("a") in seen
    assert hash("b") not in seen
    assert len(seen) == 1


def test_zero_and_negative_values() -> None:
    seen = HashSet()
    assert seen.add(0)
    assert not seen.add(0)
    assert seen.add(-1)
    assert seen.add(-(2**63))
    assert seen.add(2**63 - 1)
    assert not seen.add(-(2**63))
    assert len(seen) == 4


def test_growing_keeps_every_value() -> None:
    rng = random.Random(7)
    values = [rng.getrandbits(64) - 2**63 for _ in range(50_000)]
    seen = HashSet(capacity=8)
    assert all(seen.add(v) for v in values)
    assert all(v in seen for v in values)
    assert not any(seen.add(v) for v in values[::97])
    assert len(seen) == len(values)
    assert sum(rng.getrandbits(64) - 2**63 in seen for _ in range(10_000)) == 0
