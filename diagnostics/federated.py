"""Federated training of the classification head, in numpy: the pure core (no I/O, no clock).

Every site holds the pooled 1280-d LiteRT features of its own labelled images
(``diagnostics.federated_data``). A round trains the logistic head on top of the
frozen model; only heads, sample counts and metrics leave a site.

- :func:`train_local`: from the current head, ``epochs`` full-batch gradient steps on
  the same loss as ``training.heads.fit_logistic`` (class-weighted logistic loss,
  classes weighted n / (2 n_class); L2 penalty ``l2`` per weight, on raw features),
  with a fixed diagonal preconditioner so the steps stay stable on unscaled features.
- :func:`screen_updates`: drops non-finite, wrong-shape, out-of-range and
  equivocating updates, and updates whose change from the current head is far larger
  than the others' (norm > ``norm_factor`` x the median of the other updates), each
  with a reason code.
- :func:`aggregate`: FedAvg weighted by sample count, accumulated in float64 in
  member-id order, so every node computes the same bytes and the same digest.
- :func:`privatise`: optional clipping of the change to ``clip_norm`` plus Gaussian
  noise; :func:`compute_epsilon` is the zCDP accountant for it (see docs/FEDERATED.md).
- :func:`decide_adoption`: a quorum of sites, and no site's held-out AUC drops by more
  than ``max_auc_drop``.
- :class:`ServedHead` and :func:`compute_served_model_id`: an adopted head as the plug-in
  serves it, and the model id a diagnosis made with it records.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

HEAD_DIGEST_TAG = b"lungledger-head-v1\x00"
MAX_SAMPLE_COUNT = 10_000_000
DEFAULT_NORM_FACTOR = 10.0
# A change this small is never called an outlier (two near-identical updates must not exclude each other).
MIN_OUTLIER_NORM = 1e-6
POWER_ITERATIONS = 30


class FederatedError(ValueError):
    """A refused update or round input; ``code`` is a stable reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Head:
    """``logit = pooled_features @ weights + bias`` (raw features, as in the model card)."""

    weights: np.ndarray
    bias: float

    @staticmethod
    def create(weights: Iterable[float] | np.ndarray, bias: float) -> Head:
        values = np.array(weights, dtype=np.float64).reshape(-1)
        values.flags.writeable = False
        return Head(values, float(bias))

    def logits(self, features: np.ndarray) -> np.ndarray:
        logits: np.ndarray = np.asarray(features, dtype=np.float64) @ self.weights + self.bias
        return logits

    def to_bytes(self) -> bytes:
        """Canonical encoding: little-endian float64 weights then bias."""
        return self.weights.astype("<f8").tobytes() + np.array([self.bias], dtype="<f8").tobytes()

    @staticmethod
    def from_bytes(data: bytes, features: int) -> Head:
        if len(data) != 8 * (features + 1):
            raise FederatedError("bad-shape", f"head is {len(data)} bytes, expected {8 * (features + 1)}")
        values = np.frombuffer(data, dtype="<f8")
        return Head.create(values[:-1], float(values[-1]))

    def digest(self) -> str:
        return hashlib.sha256(HEAD_DIGEST_TAG + self.to_bytes()).hexdigest()


@dataclass(frozen=True)
class LocalConfig:
    """Local training of one round (the same for every site; part of the round proposal)."""

    epochs: int = 20
    learning_rate: float = 1.0
    l2: float = 1e-3


@dataclass(frozen=True)
class Update:
    """What one site sends for one round: its trained head, sample count and local metrics."""

    member_id: str
    head: Head
    sample_count: int
    metrics: Mapping[str, float] = field(default_factory=dict)

    def digest(self) -> str:
        body = f"{self.member_id}\x00{self.sample_count}\x00".encode() + self.head.to_bytes()
        return hashlib.sha256(b"lungledger-update-v1\x00" + body).hexdigest()


def compute_sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(values, dtype=np.float64)))


def compute_class_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weights n / (2 n_class), as ``training.heads.fit_logistic`` uses."""
    y = np.asarray(labels, dtype=np.float64)
    counts = np.bincount(y.astype(int), minlength=2).astype(np.float64)
    weights: np.ndarray = np.where(y > 0.5, len(y) / (2 * max(counts[1], 1)), len(y) / (2 * max(counts[0], 1)))
    return weights


@dataclass(frozen=True)
class Preconditioner:
    """A shared, public feature scale and step: every site and the pooled ceiling step alike.

    Built from the model's own training-feature statistics (``gate.json``: the mean and the
    principal covariance of the pooled features), so it is the same on every node and says
    nothing about any site's data. Steps are taken in standardised coordinates
    ``(x - mean) / scale``; the head is kept on raw features.
    """

    mean: np.ndarray
    scale: np.ndarray
    step: float

    @staticmethod
    def from_gaussian(mean: np.ndarray, basis: np.ndarray, variances: np.ndarray) -> Preconditioner:
        residual = float(variances[-1])
        diagonal = (basis ** 2) @ variances + residual * (1.0 - np.sum(basis ** 2, axis=1)).clip(min=0.0)
        scale = np.sqrt(np.maximum(diagonal, 1e-12))
        vector = np.ones(len(scale)) / math.sqrt(len(scale))
        largest = 1.0
        for _ in range(POWER_ITERATIONS):
            scaled = vector / scale
            product = (basis @ (variances * (basis.T @ scaled)) + residual * scaled) / scale
            largest = float(np.linalg.norm(product))
            vector = product / largest
        # logistic curvature <= 1/4; x2 margin for a site whose features sit off the shared mean
        return Preconditioner(np.asarray(mean, dtype=np.float64), scale, 1.0 / (0.25 * 2.0 * max(largest, 1.0)))

    @staticmethod
    def from_features(features: np.ndarray) -> Preconditioner:
        """From one data set's own statistics (tests, and the single-centre ceiling of a simulation)."""
        x = np.asarray(features, dtype=np.float64)
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        z = (x - mean) / scale
        largest = float(np.linalg.eigvalsh(z.T @ z / len(z))[-1])
        return Preconditioner(mean, scale, 1.0 / (0.25 * 2.0 * max(largest, 1.0)))

    @staticmethod
    def identity(features: int) -> Preconditioner:
        return Preconditioner(np.zeros(features), np.ones(features), 1.0)


def compute_loss(head: Head, features: np.ndarray, labels: np.ndarray, l2: float, scale: np.ndarray) -> float:
    """Mean class-weighted logistic loss plus (l2 / 2) |weights * scale|^2 (``fit_logistic``'s loss, per sample)."""
    y = np.asarray(labels, dtype=np.float64)
    logits = head.logits(features)
    per_sample = np.logaddexp(0.0, logits) - y * logits
    penalty = 0.5 * l2 * float(np.sum((head.weights * scale) ** 2))
    return float(np.mean(compute_class_weights(y) * per_sample) + penalty)


def train_local(head: Head, features: np.ndarray, labels: np.ndarray, config: LocalConfig,
                preconditioner: Preconditioner) -> Head:
    """``config.epochs`` full-batch gradient steps from ``head`` in standardised coordinates (deterministic)."""
    if len(features) == 0 or len(np.unique(labels)) < 2:
        raise FederatedError("bad-site-data", "local training needs images of both classes")
    z = (np.asarray(features, dtype=np.float64) - preconditioner.mean) / preconditioner.scale
    y = np.asarray(labels, dtype=np.float64)
    class_weights = compute_class_weights(y) / len(y)
    # standardised parameters: logit = z @ beta + intercept
    beta = head.weights * preconditioner.scale
    intercept = head.bias + float(head.weights @ preconditioner.mean)
    step = config.learning_rate * preconditioner.step / (1.0 + config.l2 * preconditioner.step)
    for _ in range(config.epochs):
        residual = class_weights * (compute_sigmoid(z @ beta + intercept) - y)
        beta = beta - step * (z.T @ residual + config.l2 * beta)
        intercept -= 4.0 * config.learning_rate * float(residual.sum())
    weights = beta / preconditioner.scale
    return Head.create(weights, intercept - float(weights @ preconditioner.mean))


def validate_update(update: Update, features: int) -> None:
    """Raise ``FederatedError`` unless the update is well-formed (shape, finite values, sample count)."""
    if update.head.weights.shape != (features,):
        raise FederatedError("bad-shape", f"head has shape {update.head.weights.shape}, expected ({features},)")
    if not (np.all(np.isfinite(update.head.weights)) and math.isfinite(update.head.bias)):
        raise FederatedError("non-finite", "head holds NaN or infinity")
    if not 0 < update.sample_count <= MAX_SAMPLE_COUNT:
        raise FederatedError("bad-sample-count", f"sample count {update.sample_count} out of range")
    if any(not math.isfinite(float(value)) for value in update.metrics.values()):
        raise FederatedError("non-finite", "metrics hold NaN or infinity")


def compute_change_norm(update: Update, base: Head) -> float:
    delta = np.append(update.head.weights - base.weights, update.head.bias - base.bias)
    return float(np.linalg.norm(delta))


@dataclass(frozen=True)
class Screening:
    """Updates kept for aggregation (sorted by member id) and the excluded ones with their reason codes."""

    accepted: tuple[Update, ...]
    excluded: Mapping[str, str]


def screen_updates(updates: Sequence[Update], base: Head, norm_factor: float = DEFAULT_NORM_FACTOR) -> Screening:
    """Exclude malformed, equivocating and outlying updates; the result does not depend on input order."""
    excluded: dict[str, str] = {}
    by_member: dict[str, list[Update]] = {}
    for update in updates:
        by_member.setdefault(update.member_id, []).append(update)
    candidates: list[Update] = []
    for member_id in sorted(by_member):
        sent = by_member[member_id]
        if len({update.digest() for update in sent}) > 1:
            excluded[member_id] = "equivocation"
            continue
        try:
            validate_update(sent[0], base.weights.size)
        except FederatedError as error:
            excluded[member_id] = error.code
            continue
        candidates.append(sent[0])
    norms = {update.member_id: compute_change_norm(update, base) for update in candidates}
    accepted = []
    for update in candidates:
        others = [norm for member_id, norm in norms.items() if member_id != update.member_id]
        limit = norm_factor * float(np.median(others)) if others else math.inf
        if norms[update.member_id] > max(limit, MIN_OUTLIER_NORM):
            excluded[update.member_id] = "norm-outlier"
        else:
            accepted.append(update)
    return Screening(tuple(accepted), excluded)


def aggregate(updates: Sequence[Update]) -> Head:
    """FedAvg weighted by sample count, summed in member-id order in float64 (bit-identical on every node)."""
    if not updates:
        raise FederatedError("no-updates", "nothing to aggregate")
    ordered = sorted(updates, key=lambda update: update.member_id)
    total = sum(update.sample_count for update in ordered)
    weights = np.zeros(ordered[0].head.weights.size, dtype=np.float64)
    bias = 0.0
    for update in ordered:
        share = update.sample_count / total
        weights = weights + share * update.head.weights
        bias = bias + share * update.head.bias
    return Head.create(weights, bias)


def privatise(head: Head, base: Head, clip_norm: float, noise_multiplier: float, rng: np.random.Generator) -> Head:
    """Clip the change from ``base`` to ``clip_norm`` and add N(0, (noise_multiplier * clip_norm)^2) per coordinate."""
    delta = np.append(head.weights - base.weights, head.bias - base.bias)
    norm = float(np.linalg.norm(delta))
    if norm > clip_norm > 0:
        delta = delta * (clip_norm / norm)
    if noise_multiplier > 0:
        delta = delta + rng.normal(0.0, noise_multiplier * clip_norm, delta.shape)
    return Head.create(base.weights + delta[:-1], base.bias + float(delta[-1]))


def compute_epsilon(noise_multiplier: float, rounds: int, delta: float = 1e-5) -> float:
    """(epsilon, delta) of ``rounds`` clipped Gaussian releases of one site's change (site-level, zCDP).

    Replacing the site's whole data set moves the clipped change by at most 2 C; noise
    sigma = z C gives rho = (2 C)^2 / (2 sigma^2) = 2 / z^2 per round (Bun & Steinke 2016),
    rounds add up, and rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP.
    """
    if noise_multiplier <= 0:
        return math.inf
    rho = rounds * 2.0 / noise_multiplier ** 2
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


@dataclass(frozen=True)
class AdoptionRule:
    quorum: int = 2
    max_auc_drop: float = 0.02


@dataclass(frozen=True)
class SiteReport:
    """One site's held-out AUC of the current head and of the candidate aggregate."""

    member_id: str
    current_auc: float
    candidate_auc: float


@dataclass(frozen=True)
class Adoption:
    adopted: bool
    reason: str


def decide_adoption(reports: Sequence[SiteReport], rule: AdoptionRule) -> Adoption:
    """Adopt when at least ``quorum`` distinct sites reported and none lost more than ``max_auc_drop``."""
    by_member = {report.member_id: report for report in reports}
    if len(by_member) < rule.quorum:
        return Adoption(False, f"no-quorum: {len(by_member)} of {rule.quorum} sites reported")
    for member_id in sorted(by_member):
        report = by_member[member_id]
        if not (math.isfinite(report.current_auc) and math.isfinite(report.candidate_auc)):
            return Adoption(False, f"bad-metrics: {member_id} reported a non-finite AUC")
        # compared in whole millionths, as the on-chain rule (consensus.governance.compute_adoption) does:
        # 0.67 - 0.65 is 0.020000000000000018 in floats, and must not count as more than a 0.02 margin
        if round(report.current_auc * 1e6) - round(report.candidate_auc * 1e6) > round(rule.max_auc_drop * 1e6):
            return Adoption(False, f"auc-drop: {member_id} {report.current_auc:.3f} -> {report.candidate_auc:.3f}")
    return Adoption(True, "adopted")


def compute_served_model_id(base_model_id: str, head_digest: str) -> str:
    """SHA-256(tflite SHA-256 || head digest), 32 raw bytes each: the id of the shipped model served with that head."""
    base, head = bytes.fromhex(base_model_id), bytes.fromhex(head_digest)
    if len(base) != 32 or len(head) != 32:
        raise FederatedError("bad-digest", "the model id and the head digest must be SHA-256 digests (32 bytes)")
    return hashlib.sha256(base + head).hexdigest()


@dataclass(frozen=True)
class ServedHead:
    """An adopted head served on top of the shipped model ``base_model_id`` (the ``.tflite``'s SHA-256).

    The head lives in the card head's space: the card's head is the raw head divided by the
    temperature (the calibration is folded in, ``docs/MODELS.md``), rounds train from it, so
    ``probability = sigmoid(pooled features @ weights + bias)`` with no further scaling.
    """

    base_model_id: str
    head: Head

    @property
    def digest(self) -> str:
        return self.head.digest()

    @property
    def model_id(self) -> str:
        return compute_served_model_id(self.base_model_id, self.digest)

    def compute_probability(self, features: np.ndarray) -> float:
        """The model's feature map [h, w, C] (or pooled [C]) -> probability, pooled in float64."""
        values = np.asarray(features, dtype=np.float64)
        pooled = values.mean(axis=(0, 1)) if values.ndim == 3 else values
        return float(compute_sigmoid(self.head.logits(pooled)))
