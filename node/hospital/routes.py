"""HTTP routes of the hospital integration.

- ``POST /api/v1/studies``: STOW-RS style upload of one series (``multipart/related;
  type="application/dicom"``, one DICOM Part 10 file per part). Every part is
  checked; refused parts are listed with their reason; the accepted ones are
  grouped by series and each series is diagnosed and recorded at once (no
  quiet time: the request is the whole series). 200 with per-instance and
  per-series outcomes when at least one series was recorded, else 400/422.
- ``GET /api/v1/diagnoses/{record_id}/fhir``: the FHIR R4 Bundle of one of
  this node's diagnoses (``application/fhir+json``).
- ``POST /api/v1/diagnoses/{record_id}/risk-factors``: risk factors learnt later make a
  new signed record referencing the first (:mod:`node.hospital.amend`).
- ``GET /api/v1/hospital``: listener port, report queue counts, recent series log.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from node.http import ApiError, json_reply, parse_hex, require_token
from node.keys import CHAIN, CONFIG, IDENTITY, MINER, PLUGIN
from node.hospital.instances import InstanceError
from node.hospital.series import ReceivedInstance, SeriesAssembler
from node.hospital.service import HospitalService
from node.records import RecordError, build_record_from_stored, derive_record_keys, parse_details

HOSPITAL = web.AppKey("hospital", HospitalService)
STOW_CONTENT_TYPES = ("multipart/related", "multipart/form-data")
MAX_STOW_PARTS_EXTRA = 10  # parts beyond max_series_instances tolerated before the request is cut off


async def read_stow_part(part: BodyPartReader, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise InstanceError("instance-too-large", f"a part is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_stow(request: web.Request, service: HospitalService) -> tuple[list[ReceivedInstance],
                                                                                 list[dict[str, Any]]]:
    """Read, check and store every part; returns the accepted instances and one outcome per part."""
    config = service.config
    accepted: list[ReceivedInstance] = []
    outcomes: list[dict[str, Any]] = []
    reader = await request.multipart()
    for index in range(config.max_series_instances + MAX_STOW_PARTS_EXTRA + 1):
        part = await reader.next()
        if part is None:
            return accepted, outcomes
        if index >= config.max_series_instances + MAX_STOW_PARTS_EXTRA:
            break
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "bad-form", "nested multipart bodies are not accepted")
        content_type = part.headers.get("Content-Type", "application/dicom").split(";")[0].strip().lower()
        try:
            if content_type not in ("application/dicom", "application/octet-stream"):
                await part.release()
                raise InstanceError("unsupported-media-type", f"part {index} is {content_type}; send application/dicom")
            data = await read_stow_part(part, config.max_instance_bytes)
            item = await asyncio.to_thread(service.save_instance, data)
        except InstanceError as error:
            outcomes.append({"part": index, "status": "refused", "code": error.code, "reason": error.message})
            continue
        accepted.append(item)
        outcomes.append({"part": index, "status": "accepted", "sop_instance_uid": item.info.sop_instance_uid,
                         "series_instance_uid": item.info.series_instance_uid})
    await asyncio.to_thread(service.dispose, accepted)
    raise ApiError(413, "series-too-large", f"more than {config.max_series_instances} instances in one request; "
                                            "the series is refused as a whole")


def require_service(request: web.Request) -> HospitalService:
    return request.app[HOSPITAL]


async def post_studies(request: web.Request) -> web.Response:
    require_token(request)
    service = require_service(request)
    if request.app[PLUGIN] is None:
        raise ApiError(503, "relay-only", "this node runs without a diagnostic plug-in (relay only)")
    if not request.content_type.startswith(STOW_CONTENT_TYPES):
        raise ApiError(415, "not-multipart", 'send DICOM files as multipart/related; type="application/dicom"')
    try:
        accepted, outcomes = await receive_stow(request, service)
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as error:
        raise ApiError(400, "bad-form", f"the multipart body cannot be parsed: {error}") from error
    if not accepted:
        reasons = "; ".join(f"part {o['part']}: {o['code']}: {o['reason']}" for o in outcomes[:5])
        raise ApiError(422 if outcomes else 400, "no-acceptable-instance",
                       f"no part was an acceptable CT or chest radiograph instance ({reasons or 'no parts'})")
    assembler = SeriesAssembler(quiet_seconds=1.0, max_instances=service.config.max_series_instances)
    for item in accepted:
        try:
            assembler.add(item, time.monotonic())
        except InstanceError as error:
            await asyncio.to_thread(service.dispose, [item])
            for outcome in outcomes:
                if outcome.get("sop_instance_uid") == item.info.sop_instance_uid:
                    outcome.update(status="refused", code=error.code, reason=error.message)
    series = [await service.process_series(s, "stow") for s in assembler.take_complete(time.monotonic(), flush=True)]
    recorded = any(s["status"] == "recorded" for s in series)
    return json_reply({"instances": outcomes, "series": series}, status=200 if recorded else 422)


async def get_diagnosis_fhir(request: web.Request) -> web.Response:
    from node.hospital.fhir import build_bundle

    require_token(request)
    chain = request.app[CHAIN]
    record_id = parse_hex(request.match_info["record_id"], 16, "record-id")
    data = await chain.get_details(record_id)
    [location] = await chain.get_record_locations([record_id])
    if data is None:
        raise ApiError(404, "diagnosis-not-found", f"this node holds no diagnosis {record_id.hex()}")
    try:
        details = parse_details(data)
    except RecordError as error:
        raise ApiError(500, error.code, error.message) from None
    block = (location[0].height, location[0].block_hash.hex()) if location is not None else None
    bundle = await asyncio.to_thread(build_bundle, record_id.hex(), details, block)
    return web.json_response(bundle, content_type="application/fhir+json")


async def post_risk_factors(request: web.Request) -> web.Response:
    """A new signed record with the risk factors added, referencing the first (which is never edited)."""
    from node.hospital.amend import AmendError, build_amended_result, get_amended_images

    require_token(request)
    plugin = request.app[PLUGIN]
    if plugin is None:
        raise ApiError(503, "relay-only", "this node runs without a diagnostic plug-in (relay only)")
    chain = request.app[CHAIN]
    record_id = parse_hex(request.match_info["record_id"], 16, "record-id")
    try:
        update = await request.json()
    except ValueError:
        raise ApiError(400, "bad-json", "send the risk factors as a JSON object") from None
    data = await chain.get_details(record_id)
    if data is None:
        raise ApiError(404, "diagnosis-not-found", f"this node holds no diagnosis {record_id.hex()}")
    try:
        details = parse_details(data)
        result = build_amended_result(record_id.hex(), details, update, plugin.info(),
                                      request.app[CONFIG].plugin_options)
    except AmendError as error:
        raise ApiError(error.status, error.code, error.message) from None
    except RecordError as error:
        raise ApiError(500, error.code, error.message) from None
    identity = request.app[IDENTITY]
    try:
        new = await asyncio.to_thread(build_record_from_stored, result, get_amended_images(details), None,
                                      identity.private_key, identity.member_id,
                                      derive_record_keys(identity.private_key), chain.clock_ms())
    except RecordError as error:
        raise ApiError(422, error.code, error.message) from None
    await chain.add_pending_record(new.record, new.details_bytes)
    request.app[MINER].wake()
    return json_reply({"record_id": new.record.record_id.hex(), "amends": record_id.hex(), "result": result},
                      status=202)


async def get_hospital_status(request: web.Request) -> web.Response:
    require_token(request)
    return json_reply(await require_service(request).status())


def setup_routes(app: web.Application) -> None:
    api = "/api/v1"
    app.router.add_post(f"{api}/studies", post_studies)
    app.router.add_get(f"{api}/diagnoses/{{record_id}}/fhir", get_diagnosis_fhir)
    app.router.add_post(f"{api}/diagnoses/{{record_id}}/risk-factors", post_risk_factors)
    app.router.add_get(f"{api}/hospital", get_hospital_status)
