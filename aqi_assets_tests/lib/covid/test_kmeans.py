"""The own k-means and the exact optimal 1-D partition, against brute force and scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aqi_assets.lib.covid.kmeans import canonical_labels, kmeans, labelled_inertia, optimal_partition_1d
from aqi_assets.lib.covid.queries import sklearn_kmeans_labels

# Inertias of different partitions are computed with different rounding; equal partitions give equal bits.
RTOL = 1e-9


def brute_force_optimum(values: np.ndarray, n_clusters: int) -> float:
    """Minimum inertia over every assignment of labels (exponential: tiny inputs only)."""
    best = np.inf
    for labels in itertools.product(range(n_clusters), repeat=values.size):
        best = min(best, labelled_inertia(values, np.array(labels)))
    return best


def test_optimal_partition_of_a_known_example() -> None:
    values = np.array([11.0, 0.0, 10.0, 1.0, 0.0, 11.0, 1.0, 10.0])
    result = optimal_partition_1d(values, 2)
    assert result.inertia == pytest.approx(2.0)  # {0,0,1,1} and {10,10,11,11}: 4 × 0.25 each
    assert result.labels.tolist() == [1, 0, 1, 0, 0, 1, 0, 1]


@settings(max_examples=60, deadline=None)
@given(
    values=arrays(np.float64, st.integers(1, 7), elements=st.floats(-1e3, 1e3, allow_nan=False)),
    n_clusters=st.integers(1, 3),
)
def test_optimal_partition_matches_brute_force(values: np.ndarray, n_clusters: int) -> None:
    expected = brute_force_optimum(values, n_clusters)
    assert optimal_partition_1d(values, n_clusters).inertia == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=arrays(np.float64, st.integers(1, 60), elements=st.floats(-1e6, 1e6, allow_nan=False)),
    n_clusters=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_optimum_bounds_lloyd_and_seed_determines_result(values: np.ndarray, n_clusters: int, seed: int) -> None:
    optimum = optimal_partition_1d(values, n_clusters).inertia
    first = kmeans(values, n_clusters, seed=seed, n_init=2)
    again = kmeans(values, n_clusters, seed=seed, n_init=2)
    # The DP's costs come from prefix sums of squares: rounding error scales with the data's magnitude.
    assert optimum <= first.inertia * (1 + RTOL) + rounding_tolerance(values)
    assert np.array_equal(first.labels, again.labels)
    assert first.inertia == again.inertia
    # Canonical labels: 0..k'-1, cluster means strictly increasing with the label.
    means = [values[first.labels == label].mean() for label in range(first.labels.max() + 1)]
    assert all(np.isfinite(means)) and all(a < b for a, b in itertools.pairwise(means))
    assert first.labels.max() + 1 <= n_clusters


@settings(max_examples=25, deadline=None)
@given(values=arrays(np.float64, st.integers(4, 50), elements=st.floats(0, 1e5, allow_nan=False)))
def test_optimum_bounds_scikit_learn(values: np.ndarray) -> None:
    labels = canonical_labels(values, sklearn_kmeans_labels(values, 4, seed=1, n_init=3))
    bound = labelled_inertia(values, labels) * (1 + RTOL) + rounding_tolerance(values)
    assert optimal_partition_1d(values, 4).inertia <= bound


def rounding_tolerance(values: np.ndarray) -> float:
    return 1e-12 * float(np.sum(np.square(values))) + 1e-9


def test_identical_points_share_one_cluster() -> None:
    values = np.zeros(50)
    assert kmeans(values, 4, seed=1).labels.tolist() == [0] * 50
    assert optimal_partition_1d(values, 4).inertia == 0.0


def test_separated_blobs_are_recovered_in_two_dimensions() -> None:
    rng = np.random.default_rng(7)
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    points = np.concatenate([centre + rng.normal(size=(30, 2)) for centre in centres])
    result = kmeans(points, 3, seed=3)
    truth = np.repeat([0, 2, 1], 30)  # canonical order is lexicographic on the cluster means
    assert result.labels.tolist() == truth.tolist()
    assert result.inertia == pytest.approx(labelled_inertia(points, truth))


def test_each_seed_reproduces_its_clustering() -> None:
    rng = np.random.default_rng(11)
    values = rng.gamma(1.0, 1e4, 50)
    runs = {seed: kmeans(values, 4, seed=seed, n_init=1).labels.tobytes() for seed in range(5)}
    assert all(kmeans(values, 4, seed=seed, n_init=1).labels.tobytes() == runs[seed] for seed in range(5))


@pytest.mark.parametrize("bad", [np.array([]), np.array([1.0, np.nan]), np.array([np.inf])])
def test_invalid_input_is_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        kmeans(bad, 2)
    with pytest.raises(ValueError):
        optimal_partition_1d(bad, 2)


def test_fewer_points_than_clusters() -> None:
    # Found by hypothesis: two equal points and K = 4 once crashed the empty-cluster step.
    result = kmeans(np.array([0.0, 0.0]), 4, seed=0)
    assert result.labels.tolist() == [0, 0] and result.inertia == 0.0
    spread = kmeans(np.array([1.0, 5.0, 9.0]), 4, seed=3)
    assert sorted(spread.labels.tolist()) == [0, 1, 2] and spread.inertia == 0.0
