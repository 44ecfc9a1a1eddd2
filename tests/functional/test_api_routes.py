"""Chain-query routes, errors and auth rules, against a real relay-only node.

Plan:
1. A fresh node answers /status, /blocks, /blocks/{ref}, /peers, /chain/verify
   and /openapi.json; block JSON carries header_hex whose SHA-256 is the hash.
2. Records signed by the node are queued and mined; /records/{id} gives the
   record, its block, confirmations and a Merkle proof that checks against the
   block's merkle_root (with our own implementation of the proof rule, not the
   node's); /records/{id}/verify says no-local-details (no off-chain details).
3. Every parameter error is a JSON {"error", "message"} with status 400/404/405.
4. Auth: POST /diagnoses and GET /diagnoses/{id} need the bearer token
   (missing or wrong: 401); with it, a relay-only node answers 503 relay-only.
5. Body limits: an upload over the per-image limit is refused with 413 before
   the node reads all of it.
6. Tampering with a stored block's bytes makes /chain/verify report that
   block as the first bad one.
7. The page is served at / with a restrictive Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from consensus.builders import sign_record
from consensus.types import DiagnosisRecord
from aiohttp import web

from node.http import error_middleware
from node.api_diagnoses import MAX_IMAGE_BYTES, read_diagnosis_form
from node.app import CHAIN, CONFIG, IDENTITY, MINER
from node.launcher import bind_listener
from tests.support.api import RunningNode, make_node_dir, running_node, wait_until

API = "/api/v1"


def make_signed_record(node: RunningNode, number: int) -> DiagnosisRecord:
    identity = node.app[IDENTITY]
    digest = hashlib.sha256(f"seed-{number}".encode()).digest()
    record = DiagnosisRecord(
        record_id=digest[:16], member_id=identity.member_id, created_ms=1_770_000_000_000 + number,
        modalities=("ct",), image_digests=(digest,), model_ids=(hashlib.sha256(b"model").digest(),),
        probabilities_ppm=(700_000,), fused_ppm=700_000, label="affected", risk_level="High",
        details_digest=hashlib.sha256(f"details-{number}".encode()).digest())
    return sign_record(record, identity.private_key)


async def seed_mined_records(node: RunningNode, count: int) -> list[DiagnosisRecord]:
    chain, records = node.app[CHAIN], [make_signed_record(node, i) for i in range(count)]
    for record in records:
        await chain.add_pending_record(record)
    node.app[MINER].wake()

    async def all_mined() -> bool:
        return chain.view.pending_count == 0

    await wait_until(all_mined, 30, "seeded records to be mined")
    return records


@pytest.fixture
async def node(tmp_path: Path) -> RunningNode:
    async with running_node(make_node_dir(tmp_path)) as running:
        yield running


def compute_leaf(item: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + item).digest()


def fold_proof(record_hash: bytes, proof: list[dict[str, str]]) -> bytes:
    node = compute_leaf(record_hash)
    for step in proof:
        sibling = bytes.fromhex(step["hash"])
        pair = sibling + node if step["side"] == "left" else node + sibling
        node = hashlib.sha256(b"\x01" + pair).digest()
    return node


async def test_fresh_node_status_blocks_peers(node: RunningNode) -> None:
    status, body = await node.get(f"{API}/status")
    assert status == 200
    assert body["height"] == 0 and body["pending_records"] == 0 and body["diagnostics"] is None
    assert body["name"] == "St. Test Hospital" and len(body["tip_hash"]) == 64
    status, blocks = await node.get(f"{API}/blocks")
    assert status == 200 and [b["height"] for b in blocks["blocks"]] == [0]
    genesis = blocks["blocks"][0]
    assert hashlib.sha256(bytes.fromhex(genesis["header_hex"])).hexdigest() == genesis["hash"] == body["chain_id"]
    status, peers = await node.get(f"{API}/peers")
    assert status == 200 and peers["count"] == len(peers["peers"])
    status, report = await node.get(f"{API}/chain/verify")
    assert status == 200 and report["status"] == "valid" and report["blocks_checked"] == 1


async def test_blocks_records_and_merkle_proofs(node: RunningNode) -> None:
    records = await seed_mined_records(node, 5)
    _, status = await node.get(f"{API}/status")
    height = status["height"]
    assert height >= 1
    _, listing = await node.get(f"{API}/blocks", params={"start": "0", "limit": "100"})
    heights = [b["height"] for b in listing["blocks"]]
    assert heights == list(range(height + 1))
    for block in listing["blocks"]:
        header = bytes.fromhex(block["header_hex"])
        assert hashlib.sha256(header).hexdigest() == block["hash"]
        assert block["hash"].startswith("0" * block["difficulty"])
    for previous, block in zip(listing["blocks"], listing["blocks"][1:], strict=False):
        assert block["prev_hash"] == previous["hash"] and previous["next_hash"] == block["hash"]
    _, latest = await node.get(f"{API}/blocks", params={"limit": "2"})
    assert [b["height"] for b in latest["blocks"]] == [height - 1, height]
    for record in records:
        status, body = await node.get(f"{API}/records/{record.record_id.hex()}")
        assert status == 200 and body["status"] == "mined"
        assert body["record"]["encoded_hex"] == record.encoded.hex()
        _, block = await node.get(f"{API}/blocks/{body['block_height']}")
        _, same = await node.get(f"{API}/blocks/{body['block_hash']}")
        assert block == same and block["hash"] == body["block_hash"]
        assert record.record_id.hex() in block["record_ids"]
        assert body["confirmations"] == height - body["block_height"] + 1
        # One member: its own block is all the majority there is, so every mined block is final.
        assert body["finality"] == block["finality"] == {"final": True, "distinct_members": 1, "needed": 1}
        assert fold_proof(record.record_hash, body["merkle_proof"]).hex() == block["merkle_root"]
        _, verdict = await node.get(f"{API}/records/{record.record_id.hex()}/verify")
        assert verdict["status"] == "no-local-details" and verdict["checks"] == {"signature": True, "merkle_proof": True}
    _, report = await node.get(f"{API}/chain/verify")
    assert report["status"] == "valid" and report["records_checked"] == 5


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/blocks?limit=0", 400, "bad-parameter"),
    ("/blocks?limit=101", 400, "bad-parameter"),
    ("/blocks?start=-1", 400, "bad-parameter"),
    ("/blocks?start=abc", 400, "bad-parameter"),
    ("/blocks/7", 404, "block-not-found"),
    ("/blocks/xyz", 400, "bad-block-ref"),
    ("/blocks/" + "ab" * 32, 404, "block-not-found"),
    ("/records/1234", 400, "bad-record-id"),
    ("/records/" + "zz" * 16, 400, "bad-record-id"),
    ("/records/" + "00" * 16, 404, "record-not-found"),
    ("/diagnoses/" + "00" * 16, 401, "missing-token"),
    ("/no-such-route", 404, "not-found"),
])
async def test_query_errors_are_json(node: RunningNode, path: str, status: int, code: str) -> None:
    got, body = await node.get(API + path)
    assert (got, body["error"]) == (status, code)
    assert body["message"]


async def test_verify_unknown_record_says_not_found(node: RunningNode) -> None:
    status, body = await node.get(f"{API}/records/{'00' * 16}/verify")
    assert status == 200 and body["status"] == "not-found"


async def test_wrong_method_is_json_405(node: RunningNode) -> None:
    async with node.session.delete(f"{node.url}{API}/status") as response:
        body = await response.json()
    assert response.status == 405 and body["error"] == "method-not-allowed"


async def test_auth_rules_and_relay_only(node: RunningNode) -> None:
    image = {"ct": b"\x89PNG\r\n\x1a\n"}
    status, body = await node.post_diagnosis(image, auth=False)
    assert (status, body["error"]) == (401, "missing-token")
    node.token = "not-the-token"
    status, body = await node.post_diagnosis(image)
    assert (status, body["error"]) == (401, "bad-token")
    status, body = await node.get(f"{API}/diagnoses/{'00' * 16}", headers=node.auth)
    assert (status, body["error"]) == (401, "bad-token")
    node.token = (node.app[IDENTITY].api_token)
    status, body = await node.post_diagnosis(image)
    assert (status, body["error"]) == (503, "relay-only")
    assert "relay" in body["message"]
    status, body = await node.get(f"{API}/diagnoses/{'00' * 16}", headers=node.auth)
    assert (status, body["error"]) == (404, "diagnosis-not-found")


async def test_upload_limits_and_form_errors() -> None:
    """The multipart parser of POST /diagnoses, served on its own (a relay-only node answers 503 first)."""

    async def handler(request: web.Request) -> web.Response:
        images, fields = await read_diagnosis_form(request)
        return web.json_response({"images": {k: len(v) for k, v in images.items()}, "fields": fields})

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/api/v1/form", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = bind_listener("127.0.0.1", 0)
    await web.SockSite(runner, sock).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1/form"
    try:
        async with aiohttp.ClientSession() as session:
            async def post(form: aiohttp.FormData | bytes, **kwargs: object) -> tuple[int, dict]:
                async with session.post(url, data=form, **kwargs) as response:
                    return response.status, await response.json()

            form = aiohttp.FormData()
            form.add_field("ct", b"x" * (MAX_IMAGE_BYTES + 1), filename="big.png")
            status, body = await post(form)
            assert (status, body["error"]) == (413, "file-too-large")
            status, body = await post(b"plain", headers={"Content-Type": "text/plain"})
            assert (status, body["error"]) == (415, "not-multipart")
            form = aiohttp.FormData()
            form.add_field("photo", b"x", filename="a.png")
            status, body = await post(form)
            assert (status, body["error"]) == (400, "unknown-field")
            form = aiohttp.FormData(default_to_multipart=True)
            form.add_field("age", "50")
            form.add_field("smoking", "never")
            status, body = await post(form)
            assert (status, body["error"]) == (400, "no-image")
            form = aiohttp.FormData()
            form.add_field("age", "5" * 2000)
            form.add_field("ct", b"x", filename="a.png")
            status, body = await post(form)
            assert (status, body["error"]) == (413, "field-too-large")
            form = aiohttp.FormData()
            form.add_field("ct", b"abc", filename="a.png")
            form.add_field("age", "50")
            status, body = await post(form)
            assert status == 200 and body == {"images": {"ct": 3}, "fields": {"age": "50"}}
    finally:
        await runner.cleanup()


async def test_chain_verify_reports_first_tampered_block(node: RunningNode) -> None:
    await seed_mined_records(node, 3)
    _, listing = await node.get(f"{API}/blocks", params={"start": "1", "limit": "1"})
    target = listing["blocks"][0]
    store_path = node.app[CONFIG].store_path
    with sqlite3.connect(store_path) as db:
        raw = bytearray(db.execute("SELECT raw FROM blocks WHERE hash=?", (bytes.fromhex(target["hash"]),)).fetchone()[0])
        raw[-70] ^= 0x01  # a byte inside the last record's signature
        db.execute("UPDATE blocks SET raw=? WHERE hash=?", (bytes(raw), bytes.fromhex(target["hash"])))
    status, report = await node.get(f"{API}/chain/verify")
    assert status == 200 and report["status"] == "invalid"
    assert report["first_bad_block"]["height"] == 1
    assert report["first_bad_block"]["hash"] == target["hash"]
    assert report["first_bad_block"]["error"] in {"bad-signature", "bad-merkle", "bad-encoding"}


async def test_openapi_lists_every_api_route(node: RunningNode) -> None:
    status, document = await node.get(f"{API}/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in node.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith(API) and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes - {("get", f"{API}/openapi.json")} <= documented


async def test_page_is_served_with_csp(node: RunningNode) -> None:
    async with node.session.get(node.url + "/") as response:
        text = await response.text()
        assert response.status == 200 and "LungLedger" in text
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    for asset in ("app.js", "style.css"):
        async with node.session.get(f"{node.url}/static/{asset}") as response:
            assert response.status == 200
