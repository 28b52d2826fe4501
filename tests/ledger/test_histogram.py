"""Log-spaced latency histograms: buckets, merging, and how close the percentiles are."""

from __future__ import annotations

import random

import pytest

from monitor.ledger.histogram import BUCKETS, bucket_bounds, bucket_of, histogram_of, percentile_of
from monitor.ledger.totals import percentile


def test_buckets_cover_one_millisecond_to_minutes() -> None:
    assert bucket_of(0.0) == bucket_of(0.5) == bucket_of(1.0) == 0
    assert bucket_of(10 * 60_000.0) == BUCKETS - 1
    for b in range(1, BUCKETS - 1):
        low, high = bucket_bounds(b)
        assert bucket_of(low * 1.0001) == b
        assert bucket_of(high * 0.9999) == b
        assert high / low == pytest.approx(1.284, abs=0.001)


@pytest.mark.parametrize("sigma", [0.3, 0.7, 1.2])
def test_percentiles_within_five_percent_on_a_log_normal_sample(sigma: float) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(6.5, sigma) for _ in range(20_000)]
    counts = histogram_of(values)
    for q in (0.5, 0.95, 0.99):
        estimate = percentile_of(counts, q, low=min(values), high=max(values))
        assert estimate == pytest.approx(percentile(values, q), rel=0.05)


def test_merging_is_adding_counts() -> None:
    rng = random.Random(3)
    a = [rng.uniform(5, 5000) for _ in range(1000)]
    b = [rng.uniform(50, 500) for _ in range(3000)]
    merged = [x + y for x, y in zip(histogram_of(a), histogram_of(b), strict=True)]
    assert merged == histogram_of(a + b)


def test_worst_case_is_one_bucket_and_equal_values_are_exact() -> None:
    assert percentile_of(histogram_of([100.0] * 5), 0.95, low=100.0, high=100.0) == 100.0
    values = [100.0, 120.0, 150.0, 900.0]
    estimate = percentile_of(histogram_of(values), 0.5, low=100.0, high=900.0)
    exact = percentile(values, 0.5)
    assert estimate is not None and exact is not None
    assert 1 / 1.284 <= estimate / exact <= 1.284
    assert percentile_of([0] * BUCKETS, 0.5, low=None, high=None) is None
    with pytest.raises(ValueError):
        percentile_of(histogram_of([1.0]), 1.5, low=1.0, high=1.0)
