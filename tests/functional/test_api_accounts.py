"""Per-user sign-in, worklists and the audit log over HTTP, against a real node with the real plug-in.

Plan:
1. Nobody signed in (no cookie, no token) cannot reach the diagnose, worklist
   or audit routes; a wrong password is refused and logged; the session
   cookie is HttpOnly and SameSite=Strict.
2. alice diagnoses three CT slices (the session needs the CSRF token; without
   it the upload is refused): her worklist pages through them newest first,
   finds one by patient reference, and each diagnosis names her in its
   committed off-chain details, which still verify as intact.
3. bob (a user) sees an empty worklist, cannot list everyone's, and cannot
   open alice's diagnosis; carol (an administrator) can do both.
4. The audit log (administrators only) holds every sign-in, failed sign-in,
   diagnosis, view and verification, with an intact hash chain, and no
   clear patient reference. After sign-out, or once an account is disabled,
   the old cookie opens nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.auth import ACCOUNTS
from node.users import open_account_store
from tests.support.api import (
    make_node_dir,
    require_models,
    running_node,
    sample_image,
)

API = "/api/v1"
PASSWORD = "correct horse battery"


class Person:
    """One browser-like client: its own cookie jar and CSRF token."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def sign_in(self, username: str, password: str = PASSWORD) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.post(f"{self.url}{API}/session", json={"username": username, "password": password}) as r:
            body = await r.json()
            self.csrf = body.get("csrf_token", "")
            return r.status, body, r

    async def request(self, method: str, path: str, csrf: bool = True, headers: dict[str, str] | None = None,
                      **kwargs: Any) -> tuple[int, Any]:
        headers = dict(headers or {})
        if csrf and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        async with self.session.request(method, f"{self.url}{API}{path}", headers=headers, **kwargs) as response:
            return response.status, await response.json(content_type=None)

    async def diagnose(self, image: Path, patient_ref: str = "", csrf: bool = True) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("ct", image.read_bytes(), filename="ct.png", content_type="image/png")
        if patient_ref:
            form.add_field("patient_ref", patient_ref)
        return await self.request("POST", "/diagnoses", csrf=csrf, data=form)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Any]:
    require_models("ct")
    data_dir = make_node_dir(tmp_path)
    accounts = open_account_store(data_dir)
    for name, role in (("alice", "user"), ("bob", "user"), ("carol", "admin")):
        accounts.add_user(name, PASSWORD, role)
    accounts.close()
    async with running_node(data_dir, plugin="mobilenetv2") as running:
        yield running


async def test_accounts_worklists_and_audit(node: Any) -> None:
    people = [Person(node.url) for _ in range(4)]
    nobody, alice, bob, carol = people
    try:
        # 1. nobody
        for method, path in (("POST", "/diagnoses"), ("GET", "/diagnoses/" + "00" * 16), ("GET", "/worklist"),
                             ("GET", "/audit")):
            status, body = await nobody.request(method, path)
            assert (status, body["error"]) == (401, "missing-token"), path
        status, body = await nobody.diagnose(sample_image("ct"))
        assert status == 401
        status, body, _ = await nobody.sign_in("alice", "wrong password!")
        assert (status, body["error"]) == (401, "bad-credentials")
        status, body, _ = await nobody.sign_in("my-secret-pass", "x")  # a password typed as the name
        assert (status, body["error"]) == (401, "bad-credentials")
        status, body = await nobody.request("GET", "/session")
        assert (status, body["error"]) == (401, "signed-out")
        status, body, response = await alice.sign_in("alice")
        assert status == 201 and body["user"] == {"username": "alice", "role": "user", "disabled": False}
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "lungledger_session=" in cookie

        # the page's background polling of public routes does not keep a session alive (idle expiry still works)
        def seen_ms() -> int:
            row = node.app[ACCOUNTS]._db.execute("SELECT seen_ms FROM sessions").fetchone()
            return int(row[0])

        before = seen_ms()
        for path in ("/status", "/blocks", "/events", "/peers"):
            status, _ = await alice.request("GET", path)
            assert status == 200
        assert seen_ms() == before

        # 2. alice diagnoses
        status, body = await alice.diagnose(sample_image("ct"), csrf=False)
        assert (status, body["error"]) == (403, "bad-csrf-token")
        record_ids = []
        for index, patient in enumerate(("MRN-1", "MRN-2", "MRN-3")):
            status, body = await alice.diagnose(sample_image("ct", index=index), patient)
            assert status == 202, body
            record_ids.append(body["record_id"])
            assert body["operator"] == "alice"
        status, page1 = await alice.request("GET", "/worklist?limit=2")
        assert status == 200 and page1["total"] == 3
        assert [item["record_id"] for item in page1["items"]] == record_ids[:0:-1]
        status, page2 = await alice.request("GET", "/worklist?limit=2&offset=2")
        assert [item["record_id"] for item in page2["items"]] == record_ids[:1]
        assert all(item["username"] == "alice" and item["status"] in ("pending", "mined") for item in page1["items"])
        status, found = await alice.request("GET", "/worklist?patient_ref=MRN-2")
        assert [item["record_id"] for item in found["items"]] == [record_ids[1]]
        risk = page1["items"][0]["risk_level"]
        status, by_risk = await alice.request("GET", f"/worklist?risk_level={risk}")
        assert record_ids[2] in [item["record_id"] for item in by_risk["items"]]
        for bad in ("limit=0", "limit=101", "offset=-1", "date=2026-13-01", "risk_level=Severe", "scope=some"):
            status, body = await alice.request("GET", f"/worklist?{bad}")
            assert (status, body["error"]) == (400, "bad-parameter"), bad
        status, mine = await alice.request("GET", f"/diagnoses/{record_ids[0]}")
        assert status == 200 and mine["operator"] == "alice"
        status, verdict = await alice.request("GET", f"/records/{record_ids[0]}/verify")
        assert status == 200 and verdict["status"] in ("intact", "pending")  # the operator is inside the commitment

        # 3. bob and carol
        await bob.sign_in("bob")
        status, body = await bob.request("GET", "/worklist")
        assert status == 200 and body["total"] == 0
        status, body = await bob.request("GET", "/worklist?scope=all")
        assert (status, body["error"]) == (403, "admin-only")
        status, body = await bob.request("GET", f"/diagnoses/{record_ids[0]}")
        assert (status, body["error"]) == (403, "not-your-diagnosis")
        status, body = await bob.request("GET", "/audit")
        assert (status, body["error"]) == (403, "admin-only")
        await carol.sign_in("carol")
        status, body = await carol.request("GET", "/worklist?scope=all")
        assert status == 200 and {item["record_id"] for item in body["items"]} == set(record_ids)
        status, body = await carol.request("GET", f"/diagnoses/{record_ids[0]}")
        assert status == 200 and body["operator"] == "alice"

        # 4. the audit log
        status, audit = await carol.request("GET", "/audit?limit=100")
        assert status == 200 and audit["chain_intact"] is True
        actions = [(entry["username"], entry["action"], entry["target"]) for entry in audit["entries"]]
        for expected in [("alice", "sign-in-failed", None), ("alice", "sign-in", None), ("bob", "sign-in", None),
                         ("alice", "view-diagnosis", record_ids[0]), ("alice", "verify-record", record_ids[0]),
                         ("carol", "view-diagnosis", record_ids[0])] + \
                [("alice", "diagnose", record_id) for record_id in record_ids]:
            assert expected in actions, expected
        assert ("bob", "view-diagnosis", record_ids[0]) not in actions  # refused, so not an action taken
        assert "MRN-2" not in str(audit) and "my-secret-pass" not in str(audit)
        assert ("(unknown)", "sign-in-failed", None) in actions
        status, body = await alice.request("DELETE", "/session")
        assert status == 200
        status, body = await alice.request("GET", "/worklist")
        assert (status, body["error"]) == (401, "missing-token")
        node.app[ACCOUNTS].set_disabled("bob")
        status, body = await bob.request("GET", "/worklist")
        assert status == 401
        status, body, _ = await bob.sign_in("bob")
        assert (status, body["error"]) == (401, "bad-credentials")
        # the machine token still works for scripts, and sees everything
        status, body = await nobody.request("GET", "/worklist?scope=all", headers=node.auth)
        assert status == 200 and body["total"] == 3
    finally:
        for person in people:
            await person.session.close()


async def test_sign_in_errors_and_throttle(node: Any) -> None:
    person = Person(node.url)
    try:
        async with person.session.post(f"{node.url}{API}/session", data="username=alice") as response:
            assert (response.status, (await response.json())["error"]) == (415, "not-json")
        async with person.session.post(f"{node.url}{API}/session", data=b"{", headers={"Content-Type": "application/json"}) as response:
            assert (response.status, (await response.json())["error"]) == (400, "bad-json")
        async with person.session.post(f"{node.url}{API}/session", json={"username": "alice"}) as response:
            assert (response.status, (await response.json())["error"]) == (400, "bad-sign-in")
        async with person.session.post(f"{node.url}{API}/session", json={"username": "a" * 5000, "password": "x"}) as response:
            assert (response.status, (await response.json())["error"]) == (413, "body-too-large")
        statuses = [(await person.sign_in("alice", "wrong password!"))[0] for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        status, body, _ = await person.sign_in("alice")
        assert (status, body["error"]) == (429, "too-many-attempts")  # even the right password, for a while
    finally:
        await person.session.close()
