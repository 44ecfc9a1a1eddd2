"""A LiteRT model and its card: loading, checking and thread-safe batched inference.

The artefact contract (``models/<modality>/model.tflite`` + ``card.json``) is
described in ``docs/DIAGNOSTICS.md``. Loading refuses a model whose SHA-256
differs from the card's ``model_id`` or whose head weights do not reproduce
its probability output, so the node never serves a model with the wrong card.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.errors import DiagnosisError
from diagnostics.gate import InputGate, load_gate
from diagnostics.preprocessing import DEFAULT_HARMONISATION, HARMONISATIONS, to_model_input, to_model_square

MIN_INPUT_SIZE = 32
DEFAULT_MAX_BATCH = 8
# "auto" batching turns on only if a batched invoke is at least 10 % faster per image.
BATCHING_GAIN = 0.9
# The card's head must reproduce the model's own probability this closely.
HEAD_CHECK_TOLERANCE = 1e-3
# The two input layouts a model may take (channels, dtype): the harmonised grey square as one channel (2.0.1 on:
# the backbone's first convolution summed over its three colour channels, the same function of a grey image), or
# that square copied to three channels (2.0.0 and older, and the 1.x recipe).
INPUT_LAYOUTS: dict[tuple[int, str], str] = {(1, "float32"): "float32 grey", (3, "float32"): "float32 RGB"}


@dataclass(frozen=True)
class ModelCard:
    """The fields of ``card.json`` that serving needs (``raw`` keeps all of it)."""

    model_id: str
    name: str
    version: str
    modality: str
    input_size: int
    threshold: float
    probability_output: int
    features_output: int
    head_weights: np.ndarray
    head_bias: float
    validation: Mapping[str, Any]
    raw: Mapping[str, Any]
    gate_sha256: str | None = None

    @property
    def auc(self) -> float | None:
        """Validation AUC, or None when the card has none (a tiny smoke-test validation set)."""
        value = self.validation.get("auc")
        return None if value is None or not math.isfinite(float(value)) else float(value)

    def describe(self) -> dict[str, Any]:
        """Model identity for info() and results."""
        calibration = self.raw.get("calibration") or {}
        return {"name": self.name, "version": self.version, "sha256": self.model_id,
                "modality": self.modality, "threshold": self.threshold, "input_size": self.input_size,
                "validation": dict(self.validation), "gate": self.gate_sha256 is not None,
                "temperature": calibration.get("temperature")}


def parse_model_card(card: Mapping[str, Any], source: str = "card.json") -> ModelCard:
    """Validate a card dict and return a :class:`ModelCard`; raises ``bad-model-card``."""
    try:
        weights = np.asarray(card["head"]["weights"], dtype=np.float32)
        parsed = ModelCard(
            model_id=str(card["model_id"]).lower(), name=str(card["name"]), version=str(card["version"]),
            modality=str(card["modality"]), input_size=int(card["input_size"]),
            threshold=float(card["threshold"]), probability_output=int(card["outputs"]["probability"]),
            features_output=int(card["outputs"]["features"]), head_weights=weights,
            head_bias=float(card["head"]["bias"]), validation=dict(card["metrics"]["validation"]), raw=card,
            gate_sha256=str(card["gate"]["sha256"]).lower() if card.get("gate") else None)
        auc = parsed.auc
    except (KeyError, TypeError, ValueError) as error:
        raise DiagnosisError("bad-model-card", f"{source}: missing or malformed field ({error!r})") from error
    if not 0.0 < parsed.threshold < 1.0 or not (auc is None or 0.0 <= auc <= 1.0) \
            or not math.isfinite(parsed.head_bias):
        raise DiagnosisError("bad-model-card", f"{source}: threshold must be in (0, 1) and auc in [0, 1]")
    if parsed.input_size < MIN_INPUT_SIZE or weights.ndim != 1 or not np.all(np.isfinite(weights)):
        raise DiagnosisError("bad-model-card", f"{source}: bad input_size or head weights")
    return parsed


def load_model_card(path: Path) -> ModelCard:
    try:
        card = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DiagnosisError("model-unavailable", f"cannot read model card {path}: {error}") from error
    return parse_model_card(card, str(path))


class LiteRTModel:
    """One exported model; ``predict`` is thread-safe (one lock per model)."""

    def __init__(self, model_dir: Path, num_threads: int | None = None,
                 max_batch: int = 1) -> None:
        model_dir = Path(model_dir)
        self.card = load_model_card(model_dir / "card.json")
        try:
            self._content = (model_dir / "model.tflite").read_bytes()
        except OSError as error:
            raise DiagnosisError("model-unavailable", f"cannot read {model_dir / 'model.tflite'}: {error}") from error
        digest = hashlib.sha256(self._content).hexdigest()
        if digest != self.card.model_id:
            raise DiagnosisError("model-mismatch", f"{model_dir}: model.tflite has SHA-256 {digest}, "
                                                   f"but card.json says {self.card.model_id}")
        self.num_threads = num_threads
        self.input_channels, self.input_dtype = 3, np.dtype(np.float32)
        self.max_batch = 1
        self.batching_measurement: dict[str, float] = {}
        self._lock = threading.Lock()
        self._interpreters: dict[int, Any] = {}
        first = self._get_interpreter(1)
        self.dynamic_batch = int(first.get_input_details()[0]["shape_signature"][0]) == -1
        self._validate_signature(first)
        self._validate_head()
        # the learned input gate (diagnostics.gate); None for a card without one (e.g. a smoke-test model)
        self.gate: InputGate | None = None
        hyper = self.card.raw.get("hyperparameters") or {}
        self.harmonisation = str(hyper.get("harmonisation", DEFAULT_HARMONISATION))
        if self.harmonisation not in HARMONISATIONS:
            raise DiagnosisError("bad-model-card", f"unknown harmonisation {self.harmonisation!r}")
        reference = self.card.raw.get("reference_cdf")
        self.reference_cdf = None if reference is None else np.asarray(reference, dtype=np.float64)
        if self.card.gate_sha256 is not None:
            self.gate = load_gate(model_dir, self.card.modality, self.card.head_weights.size, self.card.gate_sha256)
        self.set_max_batch(max_batch)

    @property
    def input_size(self) -> int:
        return self.card.input_size

    def _get_interpreter(self, batch: int) -> Any:
        """The interpreter allocated for ``batch`` items (caller holds the lock, or is __init__)."""
        interpreter = self._interpreters.get(batch)
        if interpreter is None:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_content=self._content, num_threads=self.num_threads)
            if batch != 1:
                size = self.card.input_size
                interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"],
                                                [batch, size, size, self.input_channels])
            interpreter.allocate_tensors()
            self._interpreters[batch] = interpreter
        return interpreter

    def _validate_signature(self, interpreter: Any) -> None:
        size = self.card.input_size
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        shape = [int(v) for v in inputs[0]["shape"][1:]] if len(inputs) == 1 else []
        layout = (shape[2], np.dtype(inputs[0]["dtype"]).name) if len(shape) == 3 and shape[:2] == [size, size] \
            else None
        if layout not in INPUT_LAYOUTS:
            raise DiagnosisError("bad-model-card", f"model input is {inputs[0]['shape']} {inputs[0]['dtype']}, "
                                                   f"expected float32 [batch, {size}, {size}, 1 or 3]")
        declared = (self.card.raw.get("input") or {}).get("shape")
        if isinstance(declared, list) and len(declared) == 4 and declared[3] != layout[0]:
            raise DiagnosisError("bad-model-card", f"card says the input has {declared[3]} channels, "
                                                   f"the model takes {layout[0]}")
        self.input_channels, self.input_dtype = layout[0], np.dtype(layout[1])
        indices = (self.card.probability_output, self.card.features_output)
        if len(outputs) != 2 or sorted(indices) != [0, 1]:
            raise DiagnosisError("bad-model-card", "card outputs must name output 0 and 1 of a two-output model")
        probability_shape = list(outputs[self.card.probability_output]["shape"])
        features_shape = list(outputs[self.card.features_output]["shape"])
        if probability_shape != [1, 1] or len(features_shape) != 4 \
                or features_shape[3] != self.card.head_weights.size:
            raise DiagnosisError("bad-model-card", f"outputs {probability_shape} / {features_shape} do not match "
                                                   f"a probability [b, 1] and features [b, h, w, "
                                                   f"{self.card.head_weights.size}]")
        self._input_index = inputs[0]["index"]
        self._probability_index = outputs[self.card.probability_output]["index"]
        self._features_index = outputs[self.card.features_output]["index"]

    def _validate_head(self) -> None:
        """The card's head applied to the pooled features must give the model's probability, on three probe
        images (a diagonal ramp, flat mid-grey, a checkerboard): one probe alone can land where the sigmoid is
        flat (p ~ 0 or 1), where a wrong bias would change the probability by less than the tolerance."""
        size = self.card.input_size
        ramp = np.linspace(0.0, 255.0, size)
        cells = np.arange(size) // 16
        probes = np.stack([np.rint((ramp[:, None] + ramp[None, :]) / 2.0), np.full((size, size), 128.0),
                           255.0 * ((cells[:, None] + cells[None, :]) % 2)]).astype(np.uint8)
        probabilities, features = self.predict(np.stack([self.make_input(probe) for probe in probes]))
        logits = features.mean(axis=(1, 2)).astype(np.float64) @ self.card.head_weights + self.card.head_bias
        from_head = 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))
        worst = int(np.argmax(np.abs(from_head - probabilities)))
        if not abs(from_head[worst] - float(probabilities[worst])) <= HEAD_CHECK_TOLERANCE:
            raise DiagnosisError("bad-model-card", f"card head gives probability {from_head[worst]:.6f} where the "
                                                   f"model gives {float(probabilities[worst]):.6f}; the card does "
                                                   "not belong to this model")

    def make_input(self, square: np.ndarray) -> np.ndarray:
        """Harmonised uint8 (S, S) -> the model's input tensor for one image, float32 (S, S, 1) or (S, S, 3)."""
        if self.input_channels == 1:
            return np.asarray(square, dtype=np.float32)[:, :, None]
        tensor = np.empty((*square.shape, 3), dtype=np.float32)
        tensor[...] = square[:, :, None]
        return tensor

    def prepare_input(self, gray: np.ndarray) -> np.ndarray:
        """Greyscale image (H, W) in 0..255 -> this model's input tensor (the shared preprocessing)."""
        if self.input_channels == 1:
            square = to_model_square(gray, self.input_size, self.harmonisation, self.reference_cdf)
            return np.asarray(square, dtype=np.float32)[:, :, None]
        return to_model_input(gray, self.input_size, self.harmonisation, self.reference_cdf)

    def random_inputs(self, count: int, seed: int = 0) -> np.ndarray:
        """``count`` random input tensors of this model's layout (probes and batching measurements)."""
        size = self.input_size
        values = np.random.default_rng(seed).integers(0, 256, (count, size, size, self.input_channels))
        return values.astype(self.input_dtype)

    def set_max_batch(self, max_batch: int) -> None:
        """Largest invoke; sizes are powers of two (a batch of 5 runs as 4 + 1), allocated now, not per request."""
        self.max_batch = max(1, int(max_batch)) if self.dynamic_batch else 1
        wanted = {2 ** power for power in range(self.max_batch.bit_length()) if 2 ** power <= self.max_batch}
        with self._lock:
            for size in set(self._interpreters) - wanted:
                del self._interpreters[size]
            for size in sorted(wanted):
                self._get_interpreter(size)

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input tensors [n, S, S, channels] (see :meth:`make_input`) -> (probabilities [n], features [n, h, w, C])."""
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        probabilities, features = [], []
        start = 0
        for size in get_chunk_sizes(batch.shape[0], self.max_batch):
            chunk = batch[start:start + size]
            start += size
            with self._lock:
                interpreter = self._get_interpreter(chunk.shape[0])
                interpreter.set_tensor(self._input_index, chunk)
                interpreter.invoke()
                probabilities.append(interpreter.get_tensor(self._probability_index)[:, 0])
                features.append(interpreter.get_tensor(self._features_index))
        if len(probabilities) == 1:
            return probabilities[0], features[0]
        return np.concatenate(probabilities), np.concatenate(features)


def get_chunk_sizes(count: int, max_batch: int | None = None) -> list[int]:
    """Split ``count`` items into power-of-two invokes, largest first, none above ``max_batch``."""
    largest = 1
    while largest * 2 <= (max_batch if max_batch is not None else count):
        largest *= 2
    sizes, remaining, size = [], count, largest
    while remaining:
        while size > remaining:
            size //= 2
        sizes.append(size)
        remaining -= size
    return sizes


def measure_batching(model: LiteRTModel, batch: int = DEFAULT_MAX_BATCH, repeats: int = 3) -> dict[str, float]:
    """Seconds per image for ``batch`` single invokes and for one batched invoke (best of ``repeats``)."""
    tensors = model.random_inputs(batch)
    previous = model.max_batch
    model.set_max_batch(batch)
    single, batched = [], []
    for _ in range(repeats + 1):  # the first round warms both paths up and is dropped
        start = time.perf_counter()
        for index in range(batch):
            model.predict(tensors[index:index + 1])
        single.append((time.perf_counter() - start) / batch)
        start = time.perf_counter()
        model.predict(tensors)
        batched.append((time.perf_counter() - start) / batch)
    model.set_max_batch(previous)
    return {"single_s_per_image": min(single[1:]), "batched_s_per_image": min(batched[1:]), "batch": batch}


def choose_max_batch(model: LiteRTModel, batch: int = DEFAULT_MAX_BATCH) -> tuple[int, dict[str, float]]:
    """Batch only where it measurably pays: at least BATCHING_GAIN faster per image than single invokes."""
    if not model.dynamic_batch:
        return 1, {}
    measured = measure_batching(model, batch)
    faster = measured["batched_s_per_image"] < BATCHING_GAIN * measured["single_s_per_image"]
    return (batch if faster else 1), measured
