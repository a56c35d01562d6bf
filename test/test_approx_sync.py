"""Approximate-time pairing (core/approx_sync.py): message_filters' rule, with drops counted."""
import pytest

from muon_ad_ros.core.approx_sync import ApproximatePairer

MS = 1_000_000


def test_pairs_within_slop_nearest_first():
    p = ApproximatePairer(2, queue_size=5, slop_ns=10 * MS)
    assert p.add(0, 100 * MS, "L100") is None
    assert p.add(0, 104 * MS, "L104") is None
    assert p.add(1, 105 * MS, "R105") == ("L104", "R105")   # the nearest left frame
    assert p.unmatched == [0, 0]                             # L100 is within slop of the match: kept
    assert p.add(1, 200 * MS, "R200") is None
    assert p.add(0, 215 * MS, "L215") is None                # 15 ms apart: beyond slop
    assert p.add(0, 300 * MS, "L300") is None
    assert p.add(1, 302 * MS, "R302") == ("L300", "R302")
    assert p.unmatched == [2, 1] and p.matched == 2 and p.unmatched_total == 3  # L100, L215, R200
    assert p.queues == [{}, {}]


def test_queue_overflow_drops_the_oldest():
    p = ApproximatePairer(2, queue_size=3, slop_ns=1 * MS)
    for k in range(5):
        assert p.add(0, k * 100 * MS, k) is None
    assert p.unmatched == [2, 0] and sorted(p.queues[0]) == [200 * MS, 300 * MS, 400 * MS]
    assert p.add(1, 300 * MS, "r") == (3, "r")


def test_three_streams_and_repeated_stamps():
    p = ApproximatePairer(3, slop_ns=5 * MS)
    assert p.add(0, 10 * MS, "a") is None
    assert p.add(0, 10 * MS, "a2") is None                 # same stamp again replaces, counted
    assert p.add(1, 12 * MS, "b") is None
    assert p.add(2, 14 * MS, "c") == ("a2", "b", "c")
    assert p.unmatched == [1, 0, 0]


@pytest.mark.parametrize("kwargs", [{"streams": 1}, {"queue_size": 0}, {"slop_ns": -1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ApproximatePairer(**kwargs)
