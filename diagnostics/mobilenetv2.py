"""The default diagnostic plug-in: the MobileNetV2 models exported by ``training/``, run with LiteRT.

Options (all optional; from the node's configuration):

``models_dir``        folder holding ``<modality>/model.tflite`` + ``card.json``
                      (default: ``models/`` at the repository root)
``modalities``        which models to load (default: every modality found)
``num_threads``       LiteRT threads per invoke (default: CPU count)
``workers``           threads for decoding, inference and heatmaps (default: 2)
``max_batch``         most requests fused into one invoke; 1 disables batching; "auto" (default)
                      measures at load and batches (up to 8) only if that is at least 10 % faster
``heatmap_max_side``  longest side of the heatmap PNG (default: the CAM grid itself, 7 px, for PNG/JPEG
                      uploads, which the page stretches over the image; 64 for DICOM, shown on its own)
``max_file_bytes``, ``max_pixels``           upload limits (defaults in diagnostics.imaging)
``risk_levels``, ``risk_adjustment``, ``recommendations``   see diagnostics.fusion

``serve_head(modality, served)`` (the node calls it when a federated round is adopted) makes
that modality's probability and heatmap use an adopted head on the same features, and its
result name the served model id (docs/DIAGNOSTICS.md, "Serving an adopted federated head").
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.batching import MicroBatcher
from diagnostics.errors import DiagnosisError
from diagnostics.federated import Head, ServedHead
from diagnostics.fusion import DiagnosisConfig, ModelEvidence, compute_assessment
from diagnostics.heatmap import HEATMAP_MAX_SIDE, compute_cam, render_heatmap_png, render_image_png
from diagnostics.imaging import MODALITIES, ImageLimits, decode_image, validate_modality
from diagnostics.model import LiteRTModel, choose_max_batch
from diagnostics.plausibility import compute_histogram, validate_chest_image
from diagnostics.gate import OOD_MESSAGE
from diagnostics.result import DISCLAIMER, OUT_OF_DISTRIBUTION, DiagnosisResult, ModalityResult, ModelInfo
from diagnostics.risk import RiskFactors

PLUGIN_NAME = "mobilenetv2"
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class PreparedImage:
    """A checked, decoded image and its model input tensor."""

    modality: str
    pixels: np.ndarray
    tensor: np.ndarray
    source_format: str


class MobileNetV2Plugin:
    """Holds one LiteRT model per modality; see the module docstring for options."""

    name = PLUGIN_NAME

    def __init__(self, models: Mapping[str, LiteRTModel], config: DiagnosisConfig,
                 limits: ImageLimits = ImageLimits(), workers: int = DEFAULT_WORKERS,
                 heatmap_max_side: int | None = None) -> None:
        if not models:
            raise DiagnosisError("model-unavailable", "no model loaded; run training or set models_dir")
        self.models = dict(models)
        self.config = config
        self.limits = limits
        self.heatmap_max_side = heatmap_max_side
        self._executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="diagnostics")
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, MicroBatcher]] = \
            weakref.WeakKeyDictionary()
        # adopted heads by modality: replaced whole by serve_head, never mutated, so finish() reads one snapshot
        self._served: Mapping[str, ServedHead] = {}

    def serve_head(self, modality: str, served: ServedHead | None) -> None:
        """Serve ``served`` for ``modality`` from now on (None or the built-in head: the card's head again).

        Refused (``model-mismatch``) unless it was trained on this plug-in's own model for that modality.
        """
        model = self.models.get(modality)
        if model is None:
            raise DiagnosisError("model-unavailable", f"this plug-in has no {modality} model")
        served_heads = dict(self._served)
        if served is None or served.digest == get_builtin_head(model).digest():
            served_heads.pop(modality, None)
        elif served.base_model_id != model.card.model_id or served.head.weights.size != model.card.head_weights.size:
            raise DiagnosisError("model-mismatch", f"the {modality} head was trained on model "
                                                   f"{served.base_model_id[:16]}, this plug-in serves "
                                                   f"{model.card.model_id[:16]}")
        else:
            served_heads[modality] = served
        self._served = served_heads

    def get_served_head(self, modality: str) -> ServedHead | None:
        return self._served.get(modality)

    def info(self) -> dict[str, Any]:
        served = self._served
        return {"plugin": self.name, "disclaimer": DISCLAIMER,
                "modalities": sorted(self.models),
                "models": {modality: {**model.card.describe(), "max_batch": model.max_batch,
                                      **_describe_served(served.get(modality))}
                           for modality, model in self.models.items()}}

    def diagnose(self, images: Mapping[str, bytes], risk: RiskFactors | None) -> DiagnosisResult:
        risk = self._validate_request(images, risk)
        results = []
        for modality, data in images.items():
            prepared = self.prepare(modality, data)
            probabilities, features = self.models[modality].predict(prepared.tensor[None])
            results.append(self.finish(prepared, float(probabilities[0]), features[0]))
        return self._build_result(results, risk)

    async def diagnose_async(self, images: Mapping[str, bytes], risk: RiskFactors | None) -> DiagnosisResult:
        risk = self._validate_request(images, risk)
        loop = asyncio.get_running_loop()
        prepared = await asyncio.gather(*(loop.run_in_executor(self._executor, self.prepare, modality, data)
                                          for modality, data in images.items()))
        batchers = self._get_batchers(loop)
        outputs = await asyncio.gather(*(batchers[item.modality].submit(item.tensor) for item in prepared))
        results = await asyncio.gather(*(loop.run_in_executor(self._executor, self.finish, item, probability,
                                                              features)
                                         for item, (probability, features) in zip(prepared, outputs, strict=True)))
        return self._build_result(results, risk)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def prepare(self, modality: str, data: bytes) -> PreparedImage:
        """Decode, check plausibility and build the model input (the shared preprocessing)."""
        try:
            decoded = decode_image(data, modality, self.limits)
            pixels = decoded.to_uint8()
            validate_chest_image(pixels, modality, compute_histogram(pixels))
        except DiagnosisError as error:
            raise type(error)(error.code, f"{modality} image: {error.message}") from error
        model = self.models[modality]
        tensor = model.prepare_input(pixels)
        return PreparedImage(modality, pixels, tensor, decoded.source_format)

    def finish(self, prepared: PreparedImage, probability: float, features: np.ndarray) -> ModalityResult:
        """Input gate, heatmap (and, for DICOM, a displayable picture) and model identity for one image.

        The gate runs on the model's own pooled features: it refuses an image that is
        not a chest image (``not-a-chest-image``) or not the declared modality
        (``wrong-modality``), and flags one far from the training images.
        """
        model = self.models[prepared.modality]
        card = model.card
        served = self._served.get(prepared.modality)
        head_weights, head_bias, identity = card.head_weights, card.head_bias, \
            ModelInfo(card.name, card.version, card.model_id)
        if served is not None:  # an adopted head: its probability from the same features, no second invoke
            probability = served.compute_probability(features)
            head_weights, head_bias = served.head.weights, served.head.bias
            identity = ModelInfo(card.name, card.version, served.model_id, served.digest, card.model_id)
        flags: tuple[str, ...] = ()
        gate_summary = None
        if model.gate is not None:
            try:
                decision = model.gate.check(features.mean(axis=(0, 1)))
            except DiagnosisError as error:
                raise type(error)(error.code, f"{prepared.modality} image: {error.message}") from error
            flags = (OUT_OF_DISTRIBUTION,) if decision.out_of_distribution else ()
            gate_summary = decision.to_dict()
        cam = compute_cam(features, head_weights, head_bias)
        height, width = prepared.pixels.shape
        image_png = render_image_png(prepared.pixels) if prepared.source_format == "dicom" else None
        return ModalityResult(
            modality=prepared.modality, probability=probability, threshold=card.threshold, weight=0.0,
            model=identity, source_format=prepared.source_format,
            heatmap_png=render_heatmap_png(cam, width, height, self._get_heatmap_side(prepared, cam)),
            image_png=image_png,
            flags=flags, gate=gate_summary, cam_grid=tuple(map(tuple, np.round(cam.astype(np.float64), 3).tolist())))

    def _get_heatmap_side(self, prepared: PreparedImage, cam: np.ndarray) -> int:
        """The configured side, else the CAM grid for images the page shows (it stretches the map over them)."""
        if self.heatmap_max_side:
            return self.heatmap_max_side
        return HEATMAP_MAX_SIDE if prepared.source_format == "dicom" else max(cam.shape)

    def _validate_request(self, images: Mapping[str, bytes], risk: RiskFactors | None) -> RiskFactors:
        if risk is None:
            risk = RiskFactors()
        if not isinstance(risk, RiskFactors):
            raise DiagnosisError("bad-risk-factor", "risk must be a RiskFactors (use RiskFactors.from_mapping)")
        if not isinstance(images, Mapping) or not images:
            raise DiagnosisError("no-image", f"send at least one image, keyed by modality {MODALITIES}")
        for modality, data in images.items():
            validate_modality(modality)
            if modality not in self.models:
                raise DiagnosisError("model-unavailable", f"this node has no {modality} model; "
                                                          f"it can diagnose {sorted(self.models)}")
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise DiagnosisError("no-image", f"{modality} image must be bytes, got {type(data).__name__}")
        return risk

    def _get_batchers(self, loop: asyncio.AbstractEventLoop) -> dict[str, MicroBatcher]:
        batchers = self._batchers.get(loop)
        if batchers is None:
            batchers = {modality: MicroBatcher(model.predict, self._executor, model.max_batch)
                        for modality, model in self.models.items()}
            self._batchers[loop] = batchers
        return batchers

    def _build_result(self, results: list[ModalityResult], risk: RiskFactors) -> DiagnosisResult:
        evidence = [ModelEvidence(result.modality, result.probability, result.threshold,
                                  self.models[result.modality].card.auc) for result in results]
        assessment = compute_assessment(evidence, risk, self.config)
        weighted = {result.modality: replace(result, weight=assessment.fusion.weights[result.modality])
                    for result in results}
        warnings = tuple(f"{'CT' if result.modality == 'ct' else 'X-ray'} image {OOD_MESSAGE}: it is far from "
                         "the images this model was trained and validated on; interpret the score with caution."
                         for result in results if result.out_of_distribution)
        return DiagnosisResult(
            plugin=self.name, modalities=weighted, fused_probability=assessment.fusion.probability,
            fused_threshold=assessment.fusion.threshold, risk_adjustment=assessment.adjustment,
            adjusted_probability=assessment.adjusted_probability, label=assessment.label,
            confidence=assessment.confidence, risk_level=assessment.risk_level,
            recommendations=warnings + assessment.recommendations, risk_factors=risk)


def get_builtin_head(model: LiteRTModel) -> Head:
    """The head inside the shipped ``.tflite`` (the card's), as rounds start from it."""
    return Head.create(model.card.head_weights.astype(np.float64), model.card.head_bias)


def _describe_served(served: ServedHead | None) -> dict[str, str]:
    return {} if served is None else {"head_digest": served.digest, "served_model_id": served.model_id}


def load_models(options: Mapping[str, Any]) -> dict[str, LiteRTModel]:
    """Load every requested (or every present) modality's model from ``models_dir``."""
    models_dir = Path(options.get("models_dir") or DEFAULT_MODELS_DIR)
    requested = options.get("modalities")
    modalities = list(requested) if requested else [m for m in MODALITIES if (models_dir / m / "model.tflite").exists()]
    if not modalities:
        raise DiagnosisError("model-unavailable", f"no model found under {models_dir} "
                                                  f"(expected <modality>/model.tflite and card.json)")
    num_threads = options.get("num_threads") or os.cpu_count()
    max_batch = options.get("max_batch", "auto")
    if max_batch != "auto" and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise DiagnosisError("bad-config", f"max_batch must be 'auto' or a positive whole number, got {max_batch!r}")
    models = {}
    for modality in modalities:
        validate_modality(modality)
        model = LiteRTModel(models_dir / modality, num_threads=num_threads)
        if model.card.modality != modality:
            raise DiagnosisError("bad-model-card", f"{models_dir / modality}/card.json is for "
                                                   f"{model.card.modality!r}, not {modality!r}")
        if max_batch == "auto":
            chosen, model.batching_measurement = choose_max_batch(model)
            model.set_max_batch(chosen)
        else:
            model.set_max_batch(max_batch)
        models[modality] = model
    return models


KNOWN_OPTIONS = frozenset({"models_dir", "modalities", "num_threads", "workers", "max_batch", "heatmap_max_side",
                           "max_file_bytes", "max_pixels", "risk_levels", "risk_adjustment", "recommendations"})


def create_plugin(options: Mapping[str, Any]) -> MobileNetV2Plugin:
    """Factory named in the plug-in registry; unknown option keys are refused (typos must not pass)."""
    unknown = set(options) - KNOWN_OPTIONS
    if unknown:
        raise DiagnosisError("bad-config", f"unknown {PLUGIN_NAME} option(s) {sorted(unknown)}; "
                                           f"known: {sorted(KNOWN_OPTIONS)}")
    defaults = ImageLimits()
    limits = ImageLimits(max_file_bytes=int(options.get("max_file_bytes") or defaults.max_file_bytes),
                         max_pixels=int(options.get("max_pixels") or defaults.max_pixels))
    return MobileNetV2Plugin(load_models(options), DiagnosisConfig.from_options(options), limits,
                             workers=int(options.get("workers") or DEFAULT_WORKERS),
                             heatmap_max_side=int(options["heatmap_max_side"]) if options.get("heatmap_max_side")
                             else None)
