"""Who is asking: per-user sign-in sessions for people, the node's bearer token for machine clients.

- ``POST /api/v1/session`` (JSON ``{"username", "password"}``) signs in: an
  HttpOnly, SameSite=Strict session cookie plus a CSRF token that the page
  sends as ``X-CSRF-Token`` on every state-changing request;
  ``GET /api/v1/session`` says who is signed in; ``DELETE`` signs out.
  Sessions end after 30 minutes idle or 12 hours.
- ``Authorization: Bearer <api_token>`` stays for machine clients (scripts,
  the harness); they act as ``api-token`` and see everything, as before.
- :func:`auth_middleware` resolves the caller before any handler, refuses the
  person-only routes to nobody, keeps one user out of another's diagnoses,
  and writes the audit log (who ran, viewed, verified what, when) after each
  successful action. Errors have the API's shape ``{"error", "message"}``.

This module imports nothing from ``node.api*`` (they import it).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from node.keys import CONFIG, IDENTITY
from node.users import SESSION_MAX_MS, AccountStore, Session, User, open_account_store

log = logging.getLogger("lungledger.auth")

ACCOUNTS = web.AppKey("accounts", AccountStore)
SESSION_COOKIE = "lungledger_session"
CSRF_HEADER = "X-CSRF-Token"
MACHINE_NAME = "api-token"
MAX_LOGIN_BYTES = 4096
LOGIN_FAILURES_ALLOWED = 5
LOGIN_FAILURE_WINDOW_S = 15 * 60
MAX_THROTTLED_KEYS = 10_000
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API = "/api/v1"
# Routes that need a signed-in person or the machine token.
PROTECTED = frozenset({("POST", f"{API}/diagnoses"), ("GET", f"{API}/diagnoses/{{record_id}}"),
                       ("GET", f"{API}/worklist"), ("GET", f"{API}/audit"), ("DELETE", f"{API}/session"),
                       ("POST", f"{API}/dicom/tags"), ("POST", f"{API}/federated/rounds")})
# Successful requests written to the audit log when someone is signed in: (method, route) -> action.
AUDITED = {("POST", f"{API}/diagnoses"): "diagnose", ("GET", f"{API}/diagnoses/{{record_id}}"): "view-diagnosis",
           ("GET", f"{API}/records/{{record_id}}/verify"): "verify-record", ("GET", f"{API}/chain/verify"): "verify-chain",
           ("GET", f"{API}/worklist"): "view-worklist",
           ("GET", f"{API}/audit"): "view-audit", ("POST", f"{API}/federated/rounds"): "propose-round"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Principal:
    """The caller: a signed-in user (``via`` "session") or a machine client (``via`` "bearer")."""

    username: str
    role: str  # "user", "admin" or "machine"
    via: str
    session: Session | None = None

    @property
    def sees_everything(self) -> bool:
        return self.role in ("admin", "machine")


class AuthFailure(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> web.Response:
        return web.json_response({"error": self.code, "message": self.message}, status=self.status,
                                 headers=self.headers)


PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")


def get_principal(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


def route_of(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else request.path


async def authenticate(request: web.Request, route: str) -> Principal | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        expected = request.app[IDENTITY].api_token
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            if (request.method, route) not in PROTECTED:
                return None  # public routes ignore credentials they do not need
            raise AuthFailure(401, "bad-token", "the API token is wrong for this node",
                              {"WWW-Authenticate": 'Bearer realm="lungledger"'})
        return Principal(MACHINE_NAME, "machine", "bearer")
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    session = await asyncio.to_thread(request.app[ACCOUNTS].get_session, cookie)
    if session is None:
        return None
    if request.method in UNSAFE_METHODS:
        check_csrf(request, session)
    return Principal(session.user.username, session.user.role, "session", session)


def check_csrf(request: web.Request, session: Session) -> None:
    """State changes with a session cookie need the session's CSRF token and, if sent, a same-origin Origin."""
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise AuthFailure(403, "bad-csrf-token", "this request lacks the page's CSRF token; reload the page "
                                                 "and sign in again")
    origin = request.headers.get("Origin")
    if origin and origin != f"{request.scheme}://{request.host}":
        raise AuthFailure(403, "cross-origin", f"requests from {origin} are not accepted")


async def check_access(request: web.Request, principal: Principal | None, route: str) -> None:
    if (request.method, route) in PROTECTED and principal is None:
        raise AuthFailure(401, "missing-token", "sign in with your account on this node to use this; machine "
                                                "clients send 'Authorization: Bearer <token>' (the token is in "
                                                "the node's data directory, file api_token)",
                          {"WWW-Authenticate": 'Bearer realm="lungledger"'})
    if route == f"{API}/diagnoses/{{record_id}}" and principal is not None and not principal.sees_everything:
        record_id = request.match_info.get("record_id", "").lower()
        owner = await asyncio.to_thread(request.app[ACCOUNTS].get_diagnosis_owner, record_id)
        if owner != principal.username:
            raise AuthFailure(403, "not-your-diagnosis", "this diagnosis was run by another user; "
                                                         "only its author and administrators can open it")


def needs_caller(request: web.Request, route: str) -> bool:
    """Whether the route cares who is asking; the page's background polling of public routes does not
    (so it neither touches the session's idle timer nor costs a database write)."""
    key = (request.method, route)
    return key in PROTECTED or key in AUDITED or route == f"{API}/session"


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = route_of(request)
    if not needs_caller(request, route):
        request[PRINCIPAL] = None
        return await handler(request)
    try:
        principal = await authenticate(request, route)
        await check_access(request, principal, route)
    except AuthFailure as failure:
        return failure.response()
    request[PRINCIPAL] = principal
    response = await handler(request)
    action = AUDITED.get((request.method, route))
    if principal is not None and action is not None and response.status < 400:
        await audit_response(request, principal, action, response)
    return response


async def audit_response(request: web.Request, principal: Principal, action: str,
                         response: web.StreamResponse) -> None:
    accounts = request.app[ACCOUNTS]
    target = request.match_info.get("record_id")
    detail: dict[str, Any] = {"via": principal.via}
    if action == "diagnose" and isinstance(response, web.Response) and response.body is not None:
        reply = json.loads(bytes(response.body))  # type: ignore[arg-type]
        result = reply.get("result") or {}
        record_id = str(reply["record_id"])
        target = record_id
        detail.update(label=result.get("label"), risk_level=result.get("risk_level"))
        await asyncio.to_thread(accounts.add_diagnosis, record_id, principal.username,
                                int(reply.get("created_ms") or time.time() * 1000), reply.get("patient_pseudonym"),
                                str(result.get("label")), str(result.get("risk_level")),
                                sorted(result.get("modalities") or {}))
    elif action in ("view-worklist", "view-audit"):
        detail.update({key: value for key, value in request.query.items() if key != "patient_ref"})
        if "patient_ref" in request.query:
            detail["patient_ref"] = "given"  # the clear-text reference never goes into the log
    await asyncio.to_thread(accounts.append_audit, principal.username, action, target, detail)


# ----------------------------------------------------------------- session routes
class LoginThrottle:
    """At most LOGIN_FAILURES_ALLOWED failed sign-ins per user name and per address in the window."""

    def __init__(self) -> None:
        self.failures: dict[str, deque[float]] = defaultdict(deque)

    def blocked(self, keys: list[str], now: float) -> bool:
        for key in keys:
            window = self.failures[key]
            while window and window[0] < now - LOGIN_FAILURE_WINDOW_S:
                window.popleft()
        return any(len(self.failures[key]) >= LOGIN_FAILURES_ALLOWED for key in keys)

    def fail(self, keys: list[str], now: float) -> None:
        if len(self.failures) > MAX_THROTTLED_KEYS:  # many distinct names: forget the stale ones, then all
            for key in [key for key, window in self.failures.items() if not window or window[-1] < now - LOGIN_FAILURE_WINDOW_S]:
                del self.failures[key]
            if len(self.failures) > MAX_THROTTLED_KEYS:
                self.failures.clear()
        for key in keys:
            self.failures[key].append(now)


THROTTLE = web.AppKey("login_throttle", LoginThrottle)


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes (checked on Content-Length first)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def session_json(session: Session) -> dict[str, Any]:
    return {"user": session.user.to_dict(), "csrf_token": session.csrf_token, "expires_ms": session.expires_ms}


async def read_login(request: web.Request) -> tuple[str, str]:
    if request.content_type != "application/json":
        raise AuthFailure(415, "not-json", "send {\"username\": ..., \"password\": ...} as application/json")
    raw = await read_limited(request, MAX_LOGIN_BYTES)
    if raw is None:
        raise AuthFailure(413, "body-too-large", f"a sign-in is at most {MAX_LOGIN_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise AuthFailure(400, "bad-json", "the sign-in body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
            or not isinstance(body.get("password"), str):
        raise AuthFailure(400, "bad-sign-in", "give a user name and a password")
    return body["username"].strip().lower(), body["password"]


async def post_session(request: web.Request) -> web.Response:
    try:
        username, password = await read_login(request)
        keys, now = [f"user:{username}", f"addr:{request.remote}"], time.monotonic()
        throttle = request.app[THROTTLE]
        if throttle.blocked(keys, now):
            raise AuthFailure(429, "too-many-attempts", "too many failed sign-ins; wait 15 minutes or ask an "
                                                        "administrator", {"Retry-After": str(LOGIN_FAILURE_WINDOW_S)})
        accounts = request.app[ACCOUNTS]
        user: User | None = await asyncio.to_thread(accounts.check_password, username, password)
        if user is None:
            throttle.fail(keys, now)
            # An unknown name is logged as such: people sometimes type their password into the name field.
            known = await asyncio.to_thread(accounts.has_user, username)
            await asyncio.to_thread(accounts.append_audit, username if known else "(unknown)", "sign-in-failed",
                                    None, {"remote": request.remote})
            raise AuthFailure(401, "bad-credentials", "the user name or password is wrong, or the account "
                                                      "is disabled")
    except AuthFailure as failure:
        return failure.response()
    token, session = await asyncio.to_thread(accounts.open_session, user)
    await asyncio.to_thread(accounts.append_audit, user.username, "sign-in", None, {"remote": request.remote})
    response = web.json_response(session_json(session), status=201)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", secure=request.secure,
                        path="/", max_age=SESSION_MAX_MS // 1000)
    return response


async def get_session(request: web.Request) -> web.Response:
    principal = get_principal(request)
    if principal is None or principal.session is None:
        return web.json_response({"error": "signed-out", "message": "nobody is signed in on this page"}, status=401)
    return web.json_response(session_json(principal.session))


async def delete_session(request: web.Request) -> web.Response:
    principal = get_principal(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await asyncio.to_thread(request.app[ACCOUNTS].close_session, cookie)
    if principal is not None:
        await asyncio.to_thread(request.app[ACCOUNTS].append_audit, principal.username, "sign-out", None, {})
    response = web.json_response({"signed_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def accounts_context(app: web.Application) -> AsyncIterator[None]:
    yield
    app[ACCOUNTS].close()


def setup_auth(app: web.Application) -> None:
    """Open the account store, add the middleware and the session routes."""
    app[ACCOUNTS] = open_account_store(app[CONFIG].data_dir)
    app[THROTTLE] = LoginThrottle()
    app.cleanup_ctx.append(accounts_context)
    app.middlewares.append(auth_middleware)
    app.router.add_post(f"{API}/session", post_session)
    app.router.add_get(f"{API}/session", get_session)
    app.router.add_delete(f"{API}/session", delete_session)
