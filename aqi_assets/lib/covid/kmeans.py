"""The project's own k-means (Lloyd's algorithm, vectorised NumPy) and the exact optimal 1-D K-partition.

scikit-learn's `KMeans` is the production-grade implementation; this one exists side by side with it on
purpose (the COVID query 3 compares the two), so it stays small, readable and deterministic given a seed.
In one dimension the optimal K-cluster partition is contiguous in sorted order and can be found exactly by
dynamic programming, which gives both heuristics a yardstick.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KMeansResult:
    labels: np.ndarray  # int64, canonical: 0 = cluster with the smallest centre (lexicographic order)
    centres: np.ndarray  # (n_clusters_found, n_features), in label order
    inertia: float  # sum of squared distances to the cluster means
    n_iter: int  # Lloyd iterations of the winning initialisation


def _as_2d(points: np.ndarray) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"k-means needs a non-empty (n, d) or (n,) array, got shape {np.shape(points)}")
    if not np.all(np.isfinite(array)):
        raise ValueError("k-means input contains NaN or infinite values")
    return array


def canonical_labels(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Relabel so that labels are 0..k'-1 ordered by cluster mean (lexicographically): comparable across runs."""
    x = _as_2d(points)
    used, compact = np.unique(np.asarray(labels), return_inverse=True)
    counts = np.bincount(compact, minlength=used.size).astype(np.float64)
    means = np.stack([np.bincount(compact, weights=x[:, j], minlength=used.size) for j in range(x.shape[1])], 1)
    means /= counts[:, None]
    order = np.lexsort(means.T[::-1])  # first feature is the primary key
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[compact].astype(np.int64)


def labelled_inertia(points: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of each point to the mean of its cluster.

    Computed the same way for every clustering (own, scikit-learn, optimal) and summed in canonical cluster
    order, so that equal partitions give bit-identical inertias.
    """
    x = _as_2d(points)
    canonical = canonical_labels(x, labels)
    k = int(canonical.max()) + 1
    counts = np.bincount(canonical, minlength=k).astype(np.float64)
    total = 0.0
    for j in range(x.shape[1]):
        means = np.bincount(canonical, weights=x[:, j], minlength=k) / counts
        deviations = x[:, j] - means[canonical]
        total += float(np.bincount(canonical, weights=deviations * deviations, minlength=k).sum())
    return total


def _kmeans_plus_plus(x: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007)."""
    centres = np.empty((n_clusters, x.shape[1]))
    centres[0] = x[rng.integers(x.shape[0])]
    closest = ((x - centres[0]) ** 2).sum(axis=1)
    for index in range(1, n_clusters):
        total = closest.sum()
        # All remaining points coincide with a centre: any choice is as good, take one uniformly.
        pick = rng.integers(x.shape[0]) if total <= 0 else rng.choice(x.shape[0], p=closest / total)
        centres[index] = x[pick]
        closest = np.minimum(closest, ((x - centres[index]) ** 2).sum(axis=1))
    return centres


def _lloyd(x: np.ndarray, centres: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray, int]:
    n_clusters = centres.shape[0]
    # Same convention as scikit-learn: the tolerance is relative to the data's mean per-feature variance.
    threshold = tol * float(np.mean(np.var(x, axis=0)))
    labels = np.zeros(x.shape[0], dtype=np.int64)
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        distances = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels = distances.argmin(axis=1)  # ties go to the lowest index: identical points share a cluster
        counts = np.bincount(labels, minlength=n_clusters)
        sums = np.stack([np.bincount(labels, weights=x[:, j], minlength=n_clusters) for j in range(x.shape[1])], 1)
        new_centres = centres.copy()
        filled = counts > 0
        new_centres[filled] = sums[filled] / counts[filled, None]
        empty = np.flatnonzero(~filled)
        if empty.size:
            # An empty cluster moves to the points farthest from their centres (as scikit-learn does).
            # With fewer points than clusters, the surplus empty clusters keep their centres.
            farthest = np.argsort(-distances[np.arange(x.shape[0]), labels], kind="stable")[: empty.size]
            new_centres[empty[: farthest.size]] = x[farthest]
        shift = float(((new_centres - centres) ** 2).sum())
        centres = new_centres
        if shift <= threshold:
            break
    distances = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1), centres, iteration


def kmeans(
    points: np.ndarray,
    n_clusters: int,
    *,
    seed: int = 1,
    n_init: int = 10,
    max_iter: int = 20,
    tol: float = 1e-4,
) -> KMeansResult:
    """Lloyd's k-means with k-means++ seeding, best of ``n_init`` runs; the same seed gives the same result."""
    if n_clusters < 1 or n_init < 1 or max_iter < 1:
        raise ValueError("n_clusters, n_init and max_iter must all be at least 1")
    x = _as_2d(points)
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray, int] | None = None
    for _ in range(n_init):
        labels, _centres, n_iter = _lloyd(x, _kmeans_plus_plus(x, n_clusters, rng), max_iter, tol)
        inertia = labelled_inertia(x, labels)
        if best is None or inertia < best[0]:
            best = (inertia, labels, n_iter)
    assert best is not None
    inertia, labels, n_iter = best
    canonical = canonical_labels(x, labels)
    k = int(canonical.max()) + 1
    counts = np.bincount(canonical, minlength=k).astype(np.float64)
    centres = np.stack([np.bincount(canonical, weights=x[:, j], minlength=k) for j in range(x.shape[1])], 1)
    return KMeansResult(canonical, centres / counts[:, None], inertia, n_iter)


@dataclass(frozen=True)
class OptimalPartition:
    labels: np.ndarray  # canonical (0 = lowest values), in the input order
    inertia: float  # labelled_inertia of the partition


def optimal_partition_1d(values: np.ndarray, n_clusters: int) -> OptimalPartition:
    """The exact minimum-inertia partition of 1-D ``values`` into at most ``n_clusters`` groups.

    O(K n²) dynamic programming over the sorted values (optimal 1-D clusters are contiguous in sorted
    order); every step is a vectorised min over the previous row, so 50 points × K = 4 takes microseconds.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("the optimal partition needs a non-empty array of finite values")
    if n_clusters < 1:
        raise ValueError("n_clusters must be at least 1")
    order = np.argsort(x, kind="stable")
    centred = x[order] - x.mean()  # centring keeps the prefix-sum differences accurate
    n = centred.size
    k = min(n_clusters, n)
    prefix = np.concatenate(([0.0], np.cumsum(centred)))
    prefix_sq = np.concatenate(([0.0], np.cumsum(centred * centred)))
    start = np.arange(n + 1)[:, None]
    end = np.arange(n + 1)[None, :]
    length = end - start
    with np.errstate(divide="ignore", invalid="ignore"):
        segment_sum = prefix[None, :] - prefix[:, None]
        cost = (prefix_sq[None, :] - prefix_sq[:, None]) - segment_sum * segment_sum / length
    cost = np.where(length > 0, np.maximum(cost, 0.0), np.inf)  # cost[i, j]: one cluster of sorted[i:j]
    best = cost[0].copy()  # best[j]: optimal cost of sorted[:j] in 1 cluster
    argmins = []
    for _ in range(1, k):
        candidates = best[:, None] + cost  # previous clusters cover [:i], the new one [i:j]
        arg = candidates.argmin(axis=0)
        argmins.append(arg)
        best = candidates[arg, np.arange(n + 1)]
    # Walk the split points back from the end.
    boundaries = [n]
    for arg in reversed(argmins):
        boundaries.append(int(arg[boundaries[-1]]))
    boundaries.append(0)
    boundaries = sorted(set(boundaries))
    sorted_labels = np.zeros(n, dtype=np.int64)
    for label, (lo, hi) in enumerate(itertools.pairwise(boundaries)):
        sorted_labels[lo:hi] = label
    labels = np.empty(n, dtype=np.int64)
    labels[order] = sorted_labels
    labels = canonical_labels(x, labels)
    return OptimalPartition(labels, labelled_inertia(x, labels))
