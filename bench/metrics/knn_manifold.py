"""Precision, recall, density and coverage of a generated distribution against a real one, from
k-nearest-neighbour balls in a feature space (pure numpy; the features are the caller's).

Definitions, with real features x_1..x_N, generated y_1..y_M, and r_k(z) the distance from z
to its k-th nearest neighbour in its own set (itself excluded):
- precision (Kynkäänniemi et al. 2019): the share of y_j inside some real ball,
  ||y_j - x_i|| <= r_k(x_i): generated samples that look real;
- recall (the same paper): the share of x_i inside some generated ball,
  ||x_i - y_j|| <= r_k(y_j): the real distribution the generator covers;
- density (Naeem et al. 2020): (1 / kM) sum_j #{i : ||y_j - x_i|| <= r_k(x_i)}; 1 on average
  when the two match, above 1 where samples crowd into dense real regions;
- coverage (the same paper): the share of x_i whose own ball holds a generated sample,
  min_j ||x_i - y_j|| <= r_k(x_i); robust to real outliers, unlike recall.

``manifold_features`` prepares features as Le Bronnec et al. (ACL 2024, "Exploring Precision
and Recall to Assess the Quality and Diversity of LLMs") do for text: L2-normalised, then
projected by a PCA, fitted on both sets together, onto the fewest components that keep 90% of
the variance.
"""

from __future__ import annotations

import numpy as np

DEFAULT_K = 5
DEFAULT_VARIANCE = 0.9


def manifold_features(real: np.ndarray, generated: np.ndarray,
                      variance: float = DEFAULT_VARIANCE) -> tuple[np.ndarray, np.ndarray]:
    """(real, generated) L2-normalised and projected on the PCA components (of both sets
    together) that keep ``variance`` of the variance; variance 1 keeps every component."""
    if not 0 < variance <= 1:
        raise ValueError(f"variance must be in (0, 1], got {variance}")
    both = np.concatenate([np.asarray(real, np.float64), np.asarray(generated, np.float64)])
    both /= np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12)
    centred = both - both.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    explained = np.cumsum(singular**2) / max(float((singular**2).sum()), 1e-300)
    keep = int(np.searchsorted(explained, variance - 1e-12) + 1)
    projected = centred @ components[:keep].T
    return projected[: len(real)], projected[len(real):]


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] Euclidean distances (float64; clipped at 0 against rounding)."""
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def _kth_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    within = _distances(features, features)
    np.fill_diagonal(within, np.inf)
    return np.partition(within, k - 1, axis=1)[:, k - 1]


def precision_recall_density_coverage(real: np.ndarray, generated: np.ndarray,
                                      k: int = DEFAULT_K) -> dict[str, float]:
    """The four k-NN measures (module docstring) of ``generated`` [M, D] against ``real``
    [N, D]; each set needs more than k rows."""
    real = np.asarray(real, np.float64)
    generated = np.asarray(generated, np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"features must be [N, D] and [M, D]: got {real.shape} and "
                         f"{generated.shape}")
    if min(len(real), len(generated)) <= k:
        raise ValueError(f"k = {k} needs more than {k} real and generated rows")
    real_radii = _kth_neighbour_radii(real, k)
    generated_radii = _kth_neighbour_radii(generated, k)
    cross = _distances(real, generated)  # [N, M]
    in_real_balls = cross <= real_radii[:, None]
    in_generated_balls = cross <= generated_radii[None, :]
    return {
        "precision": float(in_real_balls.any(axis=0).mean()),
        "recall": float(in_generated_balls.any(axis=1).mean()),
        "density": float(in_real_balls.sum() / (k * len(generated))),
        "coverage": float((cross.min(axis=1) <= real_radii).mean()),
    }
