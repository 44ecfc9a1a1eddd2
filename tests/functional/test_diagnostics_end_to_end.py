"""The plug-in end to end on real images and the exported LiteRT models.

Plan:
1. CT alone, X-ray alone, both: complete, JSON-serialisable results whose
   numbers follow from the models' outputs and the cards.
2. The plug-in's probability equals a bare LiteRT invoke of the exported
   model on ``model.prepare_input(decode_image(...))`` within 1e-4.
3. DICOM: pydicom's real CT slice gives the result of its lung-windowed PNG
   rendering; a real radiograph wrapped as MONOCHROME1 DICOM gives the
   result of the PNG.
4. Bad inputs come back as DiagnosisError with their reason code.
5. Concurrency: threads and concurrent ``diagnose_async`` calls give the
   sequential results; concurrent requests share one invoke.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diagnostics import DISCLAIMER, DiagnosisError, RiskFactors, load_plugin
from diagnostics.batching import MicroBatcher
from diagnostics.fusion import ModelEvidence, compute_assessment
from diagnostics.heatmap import HEATMAP_MAX_SIDE, compute_cam
from diagnostics.imaging import LUNG_WINDOW_LEVEL, LUNG_WINDOW_WIDTH, decode_image
from harness.util import wait_until_async as wait_until
from tests.unit.test_diagnostics_helpers import (
    MODELS_DIR,
    encode_png,
    list_data_images,
    make_xray_dicom,
    read_data_image,
    require_models,
    run_litert_directly,
)

RISK = RiskFactors(age=67, smoking="former", family_history=True)


def diagnosis_code(plugin: object, images: object, risk: object = RISK) -> str:
    with pytest.raises(DiagnosisError) as caught:
        plugin.diagnose(images, risk)
    return caught.value.code


def check_heatmap(png: bytes, data: bytes, modality: str, grid: int) -> None:
    """PNG/JPEG uploads get the CAM grid itself (the page stretches it over the image), DICOM 64 px."""
    heatmap = Image.open(io.BytesIO(png))
    height, width = decode_image(data, modality).pixels.shape
    assert heatmap.format == "PNG" and heatmap.mode == "RGBA"
    assert max(heatmap.size) == (HEATMAP_MAX_SIDE if data[:4] != b"\x89PNG" else grid)
    assert heatmap.size[0] / heatmap.size[1] == pytest.approx(width / height, rel=0.2)


@pytest.mark.parametrize("modality", ["ct", "xray"])
def test_one_modality_alone(plugin: object, shared_data_dir: Path, modality: str) -> None:
    require_models(modality)
    data = read_data_image(shared_data_dir, modality, "cancer")
    result = plugin.diagnose({modality: data}, RISK)
    card = plugin.models[modality].card
    single = result.modalities[modality]
    assert set(result.modalities) == {modality}
    assert 0.0 <= single.probability <= 1.0 and single.weight == 1.0
    assert (single.model.name, single.model.version, single.model.sha256) == (card.name, card.version, card.model_id)
    assert result.fused_probability == pytest.approx(single.probability, abs=1e-9)
    expected = compute_assessment([ModelEvidence(modality, single.probability, card.threshold, card.auc)], RISK,
                                  plugin.config)
    assert result.adjusted_probability == pytest.approx(expected.adjusted_probability)
    assert result.label == ("affected" if result.fused_probability >= card.threshold else "normal")
    assert (result.confidence, result.risk_level) == (expected.confidence, expected.risk_level)
    warnings = result.recommendations[:len(result.recommendations) - len(expected.recommendations)]
    assert result.recommendations[len(warnings):] == expected.recommendations and result.disclaimer == DISCLAIMER
    assert len(warnings) == int(single.out_of_distribution)  # a flagged image gets one warning line first
    assert all("out-of-distribution" in line for line in warnings)
    assert single.gate is not None and set(single.gate["probabilities"]) == {"ct", "xray", "other"}
    grid = len(single.cam_grid)
    assert grid == card.input_size // 32 and all(len(row) == grid for row in single.cam_grid)
    check_heatmap(single.heatmap_png, data, modality, grid)


def test_both_modalities_together(plugin: object, shared_data_dir: Path) -> None:
    require_models("ct", "xray")
    images = {"ct": read_data_image(shared_data_dir, "ct", "normal"),
              "xray": read_data_image(shared_data_dir, "xray", "cancer")}
    result = plugin.diagnose(images, RISK)
    alone = {modality: plugin.diagnose({modality: data}, RISK).modalities[modality].probability
             for modality, data in images.items()}
    for modality in images:
        assert result.modalities[modality].probability == pytest.approx(alone[modality], abs=1e-6)
    evidence = [ModelEvidence(m, alone[m], plugin.models[m].card.threshold, plugin.models[m].card.auc)
                for m in ("ct", "xray")]
    expected = compute_assessment(evidence, RISK, plugin.config)
    assert result.fused_probability == pytest.approx(expected.fusion.probability, abs=1e-6)
    assert result.fused_threshold == pytest.approx(expected.fusion.threshold)
    assert sum(item.weight for item in result.modalities.values()) == pytest.approx(1.0)
    assert result.label == expected.label and result.risk_level == expected.risk_level

    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["disclaimer"] == "Research use only — not for diagnostic use"
    assert as_json["risk_factors"] == {"age": 67, "smoking": "former", "family_history": True}
    assert as_json["label"] in ("affected", "normal") and as_json["risk_level"] in ("High", "Moderate", "Low")
    assert 0 <= as_json["confidence"] <= 100 and as_json["recommendations"]
    for modality in images:
        png = base64.b64decode(as_json["modalities"][modality]["heatmap_png"])
        assert png == result.modalities[modality].heatmap_png
        assert len(as_json["modalities"][modality]["model"]["sha256"]) == 64


@pytest.mark.parametrize("modality", ["ct", "xray"])
def test_probability_equals_a_bare_litert_invoke_of_the_exported_model(plugin: object, shared_data_dir: Path,
                                                                       modality: str) -> None:
    require_models(modality)
    card = plugin.models[modality].card
    paths = list_data_images(shared_data_dir, modality, "cancer")[:3] \
        + list_data_images(shared_data_dir, modality, "normal")[:3]
    for path in paths:
        data = path.read_bytes()
        tensor = plugin.models[modality].prepare_input(decode_image(data, modality).pixels)
        expected = run_litert_directly(MODELS_DIR / modality / "model.tflite", tensor, card.probability_output)
        actual = plugin.diagnose({modality: data}, None).modalities[modality].probability
        assert abs(actual - expected) <= 1e-4, path.name


def test_cam_mean_is_the_model_logit(plugin: object, shared_data_dir: Path) -> None:
    modality = next(iter(plugin.models))
    model = plugin.models[modality]
    tensor = model.prepare_input(decode_image(read_data_image(shared_data_dir, modality), modality).pixels)
    probabilities, features = model.predict(tensor[None])
    cam = compute_cam(features[0], model.card.head_weights, model.card.head_bias)
    assert cam.shape == features.shape[1:3]
    assert 1.0 / (1.0 + np.exp(-float(cam.mean()))) == pytest.approx(float(probabilities[0]), abs=1e-4)


# --- DICOM -------------------------------------------------------------------------------


def render_ct_slice_as_png(path: Path, bits: int) -> bytes:
    """Lung window by hand, straight from the stored values, saved as an 8- or 16-bit PNG."""
    import pydicom

    dataset = pydicom.dcmread(path)
    hounsfield = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    low = LUNG_WINDOW_LEVEL - LUNG_WINDOW_WIDTH / 2
    windowed = np.clip((hounsfield - low) / LUNG_WINDOW_WIDTH, 0, 1)
    if bits == 16:
        return encode_png(np.round(windowed * 65535).astype(np.uint16))
    return encode_png(np.round(windowed * 255).astype(np.uint8))


def test_dicom_ct_slice_gives_the_result_of_its_windowed_png(plugin: object, shared_data_dir: Path) -> None:
    """DICOM and its 16-bit and 8-bit PNG renderings: probabilities within 0.02, same verdict unless borderline.

    Since 2.0.0 the preprocessing rounds the decoded image to 8 bits *before* its percentile stretch, so
    the three renderings are quantised differently (a lung-windowed DICOM uses ~200 of the 256 levels).
    """
    require_models("ct")
    path = shared_data_dir / "dicom" / "ct_lpctdx_cancer_0.dcm"  # a real chest CT slice in HU
    from_dicom = plugin.diagnose({"ct": path.read_bytes()}, RISK)
    from_png16 = plugin.diagnose({"ct": render_ct_slice_as_png(path, 16)}, RISK)
    from_png8 = plugin.diagnose({"ct": render_ct_slice_as_png(path, 8)}, RISK)
    assert from_dicom.modalities["ct"].source_format == "dicom"
    height, width = decode_image(path.read_bytes(), "ct").pixels.shape
    assert Image.open(io.BytesIO(from_dicom.modalities["ct"].image_png)).size == (min(width, 512), min(height, 512))
    assert from_png8.modalities["ct"].image_png is None  # the page already has a PNG upload
    probability = from_dicom.modalities["ct"].probability
    assert probability == pytest.approx(from_png16.modalities["ct"].probability, abs=0.02)
    assert probability == pytest.approx(from_png8.modalities["ct"].probability, abs=0.02)
    for rendering in (from_png16, from_png8):
        if abs(from_dicom.adjusted_probability - from_dicom.fused_threshold) > 0.02:  # not a borderline case
            assert (from_dicom.label, from_dicom.risk_level) == (rendering.label, rendering.risk_level)


def test_dicom_radiograph_gives_the_result_of_the_png(plugin: object, shared_data_dir: Path) -> None:
    require_models("xray")
    data = read_data_image(shared_data_dir, "xray", "normal")
    pixels = decode_image(data, "xray").pixels.astype(np.uint8)
    from_dicom = plugin.diagnose({"xray": make_xray_dicom(pixels, monochrome1=True)}, RISK)
    from_png = plugin.diagnose({"xray": data}, RISK)
    assert from_dicom.modalities["xray"].probability == pytest.approx(from_png.modalities["xray"].probability,
                                                                      abs=0.02)
    assert from_dicom.label == from_png.label


# --- refusals ------------------------------------------------------------------------------


def test_bad_requests_are_refused_with_reason_codes(plugin: object, shared_data_dir: Path) -> None:
    modality = next(iter(plugin.models))
    other = "xray" if modality == "ct" else "ct"
    data = read_data_image(shared_data_dir, modality)
    assert diagnosis_code(plugin, {}) == "no-image"
    assert diagnosis_code(plugin, [data]) == "no-image"
    assert diagnosis_code(plugin, {modality: "not bytes"}) == "no-image"
    assert diagnosis_code(plugin, {"mri": data}) == "bad-modality"
    assert diagnosis_code(plugin, {modality: data}, risk={"age": 50}) == "bad-risk-factor"
    assert diagnosis_code(plugin, {modality: b""}) == "empty-file"
    assert diagnosis_code(plugin, {modality: data[:len(data) // 2]}) == "corrupt-image"
    assert diagnosis_code(plugin, {modality: b"GIF89a" + bytes(100)}) == "unsupported-format"
    assert diagnosis_code(plugin, {modality: encode_png(np.full((256, 256), 7, np.uint8))}) == "not-a-chest-image"
    wrong = read_data_image(shared_data_dir, other)
    assert diagnosis_code(plugin, {modality: wrong}) == "wrong-modality"
    with pytest.raises(DiagnosisError) as caught:
        plugin.diagnose({modality: wrong}, RISK)
    assert caught.value.message.startswith(f"{modality} image:")


def test_modality_without_a_model_is_refused(shared_data_dir: Path) -> None:
    require_models("ct")
    ct_only = load_plugin("mobilenetv2", {"models_dir": str(MODELS_DIR), "modalities": ["ct"]})
    try:
        assert diagnosis_code(ct_only, {"xray": read_data_image(shared_data_dir, "xray")}) == "model-unavailable"
        assert ct_only.info()["modalities"] == ["ct"]
    finally:
        ct_only.close()


def test_info_names_every_model(plugin: object) -> None:
    info = plugin.info()
    assert info["plugin"] == "mobilenetv2"
    for modality, model in plugin.models.items():
        described = info["models"][modality]
        assert described["sha256"] == model.card.model_id and described["modality"] == modality
        assert {"name", "version", "threshold"} <= set(described)
    json.dumps(info)


# --- concurrency ---------------------------------------------------------------------------


def sample_images(data_dir: Path, modality: str, count: int) -> list[bytes]:
    paths = list_data_images(data_dir, modality)
    return [paths[i * len(paths) // count].read_bytes() for i in range(count)]


def test_threads_get_the_sequential_results(plugin: object, shared_data_dir: Path) -> None:
    modality = next(iter(plugin.models))
    images = sample_images(shared_data_dir, modality, 8)
    sequential = [plugin.diagnose({modality: data}, RISK).modalities[modality].probability for data in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda data: plugin.diagnose({modality: data}, RISK), images))
    assert [r.modalities[modality].probability for r in threaded] == pytest.approx(sequential, abs=1e-6)


async def test_concurrent_async_requests_get_the_sequential_results(plugin: object,
                                                                    shared_data_dir: Path) -> None:
    modality = next(iter(plugin.models))
    images = sample_images(shared_data_dir, modality, 8)
    sequential = [plugin.diagnose({modality: data}, RISK) for data in images]
    concurrent = await asyncio.gather(*(plugin.diagnose_async({modality: data}, RISK) for data in images))
    for alone, together in zip(sequential, concurrent, strict=True):
        assert together.modalities[modality].probability == pytest.approx(alone.modalities[modality].probability,
                                                                          abs=1e-4)
        assert together.label == alone.label
    sizes = plugin._get_batchers(asyncio.get_running_loop())[modality].batch_sizes
    assert sum(sizes) == 8


async def test_async_refusal_leaves_other_requests_unharmed(plugin: object, shared_data_dir: Path) -> None:
    modality = next(iter(plugin.models))
    good = read_data_image(shared_data_dir, modality)
    outcomes = await asyncio.gather(plugin.diagnose_async({modality: good}, RISK),
                                    plugin.diagnose_async({modality: b""}, RISK), return_exceptions=True)
    assert outcomes[0].label in ("affected", "normal")
    assert isinstance(outcomes[1], DiagnosisError) and outcomes[1].code == "empty-file"


async def test_requests_arriving_during_an_invoke_share_the_next_one(plugin: object,
                                                                     shared_data_dir: Path) -> None:
    modality = next(iter(plugin.models))
    model = plugin.models[modality]
    tensors = [model.prepare_input(decode_image(data, modality).pixels)
               for data in sample_images(shared_data_dir, modality, 8)]
    release, calls = threading.Event(), []

    def gated_predict(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(batch))
        if len(calls) == 1:
            release.wait(timeout=30)  # hold the first invoke until the others have queued
        return model.predict(batch)

    with ThreadPoolExecutor(max_workers=1) as executor:
        batcher = MicroBatcher(gated_predict, executor, max_batch=8)
        tasks = [asyncio.create_task(batcher.submit(tensors[0]))]
        await wait_until(lambda: len(calls) == 1)  # the first request runs at once, alone
        tasks += [asyncio.create_task(batcher.submit(tensor)) for tensor in tensors[1:]]
        await wait_until(lambda: len(batcher._pending) == 7)
        release.set()
        outputs = await asyncio.gather(*tasks)
    assert calls == [1, 7] and batcher.batch_sizes == [1, 7]
    # requests that arrive together while the model is idle go out as one batch
    with ThreadPoolExecutor(max_workers=1) as executor:
        together = MicroBatcher(model.predict, executor, max_batch=8)
        await asyncio.gather(*(together.submit(tensor) for tensor in tensors))
    assert together.batch_sizes == [8]
    expected = model.predict(np.stack(tensors))[0]
    np.testing.assert_allclose([probability for probability, _ in outputs], expected, atol=1e-4)
