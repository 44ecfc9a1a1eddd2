"""Heads on frozen MobileNetV2 features, in numpy (no TensorFlow): logistic regression,
temperature scaling, calibration figures and per-class Gaussian (Mahalanobis) models.

Used by the ablation (``training.ablation``), the shipped training
(``training.train_head``) and the input gate (``training.gate``). Everything here
is deterministic and small: the feature dimension is 1280, the data sets are a
few thousand images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.metrics import compute_auc


@dataclass(frozen=True)
class LogisticHead:
    """``logit = features @ weights + bias`` on raw (unstandardised) pooled features."""

    weights: np.ndarray
    bias: float
    l2: float

    def logits(self, features: np.ndarray) -> np.ndarray:
        logits: np.ndarray = np.asarray(features, dtype=np.float64) @ self.weights + self.bias
        return logits


def compute_sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(values, dtype=np.float64)))


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float, sample_weight: np.ndarray | None = None,
                 iterations: int = 15) -> LogisticHead:
    """L2-regularised logistic regression by Newton's method (IRLS) on standardised features.

    Classes are weighted n / (2 n_class) (as the Keras training did); ``l2`` is the
    penalty per standardised weight, scaled by the number of samples. The result is
    folded back to weights on the raw features, so serving needs no scaler.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    counts = np.bincount(y.astype(int), minlength=2).astype(np.float64)
    weight = np.where(y > 0.5, len(y) / (2 * max(counts[1], 1)), len(y) / (2 * max(counts[0], 1)))
    if sample_weight is not None:
        weight = weight * sample_weight
    penalty = np.full(z.shape[1], l2 * len(y))
    penalty[-1] = 0.0
    beta = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = compute_sigmoid(z @ beta)
        gradient = z.T @ (weight * (p - y)) + penalty * beta
        hessian = (z * (weight * p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-5:
            break
    weights = beta[:-1] / scale
    bias = float(beta[-1] - np.sum(beta[:-1] * mean / scale))
    return LogisticHead(weights=weights, bias=bias, l2=l2)


L2_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def choose_l2(train_x: np.ndarray, train_y: np.ndarray, tune_x: np.ndarray, tune_y: np.ndarray,
              grid: tuple[float, ...] = L2_GRID) -> tuple[float, dict[float, float]]:
    """The penalty with the best tuning AUC (ties: the stronger penalty)."""
    scores = {}
    for l2 in grid:
        head = fit_logistic(train_x, train_y, l2)
        scores[l2] = compute_auc(tune_y, head.logits(tune_x))
    best = max(grid, key=lambda value: (round(scores[value], 4), value))
    return best, scores


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the negative log-likelihood of sigmoid(logit / T) (grid + refinement)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)

    def nll(temperature: float) -> float:
        p = np.clip(compute_sigmoid(z / temperature), 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))
    best = float(grid[int(np.argmin([nll(t) for t in grid]))])
    fine = np.linspace(best * 0.97, best * 1.03, 61)
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def compute_brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((np.asarray(probabilities) - np.asarray(labels)) ** 2))


def compute_ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error with equal-width bins on the predicted probability of cancer."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    return float(total)


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per bin: mean predicted probability, observed frequency and count (for the diagram)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "predicted": float(p[inside].mean()),
                         "observed": float(y[inside].mean()), "n": int(inside.sum())})
    return rows


@dataclass(frozen=True)
class GaussianModel:
    """Mean and shared precision of features projected on ``basis`` (PCA of the training features)."""

    mean: np.ndarray  # (d,) in the original feature space
    basis: np.ndarray  # (d, k) orthonormal columns
    variances: np.ndarray  # (k,) variance along each column

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance in the k-dimensional principal subspace plus the residual norm, per row."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        projected = centred @ self.basis
        inside = np.sum(projected ** 2 / self.variances, axis=1)
        residual = np.sum(centred ** 2, axis=1) - np.sum(projected ** 2, axis=1)
        floor = float(self.variances[-1])
        distance: np.ndarray = np.sqrt(inside + np.maximum(residual, 0.0) / floor)
        return distance


def fit_gaussian(features: np.ndarray, components: int = 32, shrink: float = 0.05) -> GaussianModel:
    """PCA to ``components`` dimensions, variances shrunk towards their mean (stable on few images)."""
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(components, len(singular) - 1)
    variances = singular[:k] ** 2 / max(len(x) - 1, 1)
    variances = (1 - shrink) * variances + shrink * variances.mean()
    residual_variance = float(np.sum(singular[k:] ** 2) / max(len(x) - 1, 1) / max(x.shape[1] - k, 1))
    variances = np.append(variances[:-1], max(variances[-1], residual_variance, 1e-9)) if k > 0 else variances
    return GaussianModel(mean=mean, basis=vt[:k].T.copy(), variances=variances)
