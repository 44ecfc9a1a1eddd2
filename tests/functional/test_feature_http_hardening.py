"""HTTP hardening against a real node on loopback (attacks of issue 12 reproduced first).

Plan:
1. Half-open connections: sockets that send nothing, and sockets that trickle a
   request's headers one byte a second, are closed by the node within its idle
   timeout (before: 0 of 4,000 closed in 35 s).
2. Security headers (CSP, nosniff, frame denial) on every response: the page,
   the API, static files, 404s and 401s, /metrics (before: only on /).
3. The data directory is 0700 and the database (with its WAL/SHM), key and
   token files 0600 once the node has written to them (before: world-readable).
4. /chain/verify is computed once per tip: back-to-back calls return the stored
   answer; a new block gives a new verification.
5. One API token may hold at most MAX_DIAGNOSES_PER_TOKEN uploads in progress:
   stalled uploads fill its slots, the next is 429 at once, and once they are
   gone an honest upload is recorded again.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from node.app import CHAIN, IDENTITY, MINER
from node.hardening import (
    DIAGNOSES_IN_PROGRESS,
    HTTP_IDLE_TIMEOUT_S,
    MAX_DIAGNOSES_PER_TOKEN,
    SECURITY_HEADERS,
)
from tests.support.builders import MemberKeys, make_record
from tests.support.api import (
    RunningNode,
    make_node_dir,
    require_models,
    running_node,
    sample_image,
    wait_until,
)

HALF_OPEN = 40


async def closed_by_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bytes,
                         deadline: float) -> bool:
    """Send ``trickle`` one byte a second; True once the node closes the connection."""
    position = 0
    while time.monotonic() < deadline:
        if position < len(trickle):
            try:
                writer.write(trickle[position:position + 1])
                await writer.drain()
            except ConnectionError:
                return True
            position += 1
        try:
            if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


async def test_half_open_and_slow_header_connections_are_closed(tmp_path: Path) -> None:
    async with running_node(make_node_dir(tmp_path)) as node:
        port = int(node.url.rsplit(":", 1)[1])
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(HALF_OPEN)]
        slow_header = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        deadline = time.monotonic() + HTTP_IDLE_TIMEOUT_S + 10
        closed = await asyncio.gather(*(
            closed_by_peer(reader, writer, slow_header if index % 2 else b"", deadline)
            for index, (reader, writer) in enumerate(connections)))
        for _, writer in connections:
            writer.close()
        assert all(closed), f"{closed.count(False)} of {HALF_OPEN} half-open connections still open"
        status, reply = await node.get("/api/v1/status")
        assert status == 200, reply


async def test_security_headers_on_every_response(tmp_path: Path) -> None:
    async with running_node(make_node_dir(tmp_path)) as node:
        requests = [("GET", "/"), ("GET", "/api/v1/status"), ("GET", "/api/v1/nowhere"), ("GET", "/nowhere"),
                    ("POST", "/api/v1/diagnoses"), ("GET", "/metrics"), ("GET", "/api/v1/openapi.json")]
        static = sorted(p.name for p in (Path(__file__).parents[2] / "node" / "static").iterdir() if p.is_file())
        requests += [("GET", f"/static/{name}") for name in static if name != "index.html"][:2]
        for method, path in requests:
            async with node.session.request(method, node.url + path) as response:
                missing = {name for name in SECURITY_HEADERS if name not in response.headers}
                assert not missing, f"{method} {path} ({response.status}) lacks {missing}"
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                if path.startswith("/api/"):
                    assert response.headers.get("Cache-Control") == "no-store"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def add_mined_record(node: RunningNode) -> None:
    app = node.app
    identity = app[IDENTITY]
    record = make_record(MemberKeys(identity.private_key, identity.member), created_ms=int(time.time() * 1000),
                         record_id=os.urandom(16))
    height = app[CHAIN].view.height
    await app[CHAIN].add_pending_record(record)
    app[MINER].wake()
    await wait_until(lambda: app[CHAIN].view.height > height, 30, "the record to be mined")


async def test_data_directory_and_files_are_private(tmp_path: Path) -> None:
    data_dir = make_node_dir(tmp_path)
    os.chmod(data_dir, 0o755)
    async with running_node(data_dir) as node:
        await add_mined_record(node)
        assert mode_of(data_dir) == 0o700
        files = sorted(p for p in data_dir.iterdir() if p.is_file())
        names = {p.name for p in files}
        assert {"chain.sqlite3", "api_token"} <= names and any(n.endswith("-wal") for n in names), names
        loose = {p.name: oct(mode_of(p)) for p in files if mode_of(p) & 0o077}
        assert loose == {}


async def test_chain_verify_is_computed_once_per_tip(tmp_path: Path) -> None:
    async with running_node(make_node_dir(tmp_path)) as node:
        await add_mined_record(node)
        first = await node.session.get(node.url + "/api/v1/chain/verify")
        body = await first.read()
        tip = node.app[CHAIN].view.tip_hash.hex()
        assert first.status == 200 and first.headers["X-Verified-Tip"] == tip
        for _ in range(20):  # back to back: the stored answer, byte for byte (elapsed_ms included)
            async with node.session.get(node.url + "/api/v1/chain/verify") as again:
                assert again.status == 200 and await again.read() == body
        await add_mined_record(node)
        status, report = await node.get("/api/v1/chain/verify")
        assert status == 200 and report["status"] == "valid"
        assert report["height"] == node.app[CHAIN].view.height


async def stalled_upload(port: int, token: str) -> asyncio.StreamWriter:
    """An authenticated upload whose body never finishes (it holds a diagnosis slot)."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    boundary = "stall"
    writer.write((f"POST /api/v1/diagnoses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1000000\r\n\r\n"
                  f"--{boundary}\r\nContent-Disposition: form-data; name=\"ct\"; filename=\"a.png\"\r\n\r\n"
                  ).encode())
    await writer.drain()
    return writer


async def test_one_token_holds_a_bounded_number_of_diagnoses(tmp_path: Path) -> None:
    require_models("ct")
    async with running_node(make_node_dir(tmp_path), plugin="mobilenetv2") as node:
        port = int(node.url.rsplit(":", 1)[1])
        stalled = [await stalled_upload(port, node.token) for _ in range(MAX_DIAGNOSES_PER_TOKEN)]
        await wait_until(lambda: sum(node.app.get(DIAGNOSES_IN_PROGRESS, {}).values()) == MAX_DIAGNOSES_PER_TOKEN, 10,
                         "the stalled uploads to hold slots")
        status, reply = await node.post_diagnosis({"ct": sample_image("ct")})
        assert status == 429 and reply["error"] == "too-many-diagnoses", reply
        for writer in stalled:
            writer.close()

        async def honest_upload_recorded() -> bool:
            status, reply = await node.post_diagnosis({"ct": sample_image("ct")}, {"age": "60"})
            assert status in (202, 429), reply
            return status == 202

        await wait_until(honest_upload_recorded, 20, "an honest upload to be recorded again")


@pytest.fixture(autouse=True)
def _fresh_umask() -> None:
    os.umask(0o022)  # the node must not rely on a strict umask
