"""What every ``/v1`` handler shares: error answers, the admin gate, request bodies, addresses.

* :func:`error_json` is the one place a ``/v1`` error becomes an answer: JSON
  ``{"error": message, "kind": kind}`` with the status of the error table (store/errors.py);
  anything outside the hoard tree is logged and answered 500 ``internal``.
* :func:`admin_only` guards the endpoints that change the store. With an admin token set,
  they need ``X-Hoard-Admin-Token``; without one they are open only on a loopback listen
  address (127.0.0.0/8, ::1, ``localhost``): anyone who can reach a wider address could
  otherwise delete, gc or fill the store.
* :func:`v1_address` reads an address from the *raw* request path, one segment at a time, so
  a quoted revision (``@refs%2Fpr%2F1``) stays one revision instead of spilling into the path.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from hoard.store.address import Address, parse_address
from hoard.store.sources import source_info
from hoard.store.errors import AccessDenied, HoardError, UsageError, codes_for

from .request import services
from .service import ProxyConfig

__all__ = [
    "Handler",
    "error_json",
    "v1_errors",
    "admin_only",
    "is_admin",
    "is_loopback",
    "admin_endpoints_off",
    "read_body",
    "v1_address",
]

log = logging.getLogger("hoard.v1")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_json(exc: BaseException) -> web.Response:
    """A ``/v1`` error answer for ``exc`` (500 and a log line for anything unexpected)."""
    codes = codes_for(exc)
    if not isinstance(exc, HoardError) and not isinstance(exc, OSError):
        log.exception("internal error", exc_info=exc)
        return web.json_response({"error": "internal error", "kind": "internal"}, status=500)
    headers = {}
    size = getattr(exc, "size", None)
    if codes.http_status == 416 and size is not None:
        headers["Content-Range"] = f"bytes */{size}"
    kind = getattr(exc, "kind", "os_error")
    return web.json_response({"error": str(exc), "kind": kind}, status=codes.http_status, headers=headers)


def v1_errors(handler: Handler) -> Handler:
    """Answer the hoard errors (and OS errors) a handler raises as JSON."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (HoardError, OSError) as exc:
            return error_json(exc)

    return wrapped


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip("[]").lower() in ("localhost", "localhost."):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name that may resolve anywhere
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def admin_endpoints_off(config: ProxyConfig) -> bool:
    """True when the admin endpoints are refused to everyone: a non-loopback listen address
    and no admin token to tell an administrator from anyone else who can reach it."""
    return not config.admin_token and not is_loopback(config.host)


def is_admin(config: ProxyConfig, request: web.Request) -> bool:
    """Whether the request carries the configured admin token (False when none is set)."""
    token = config.admin_token
    if not token:
        return False
    given = request.headers.get("X-Hoard-Admin-Token", "")
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode())


def admin_only(handler: Handler) -> Handler:
    """Endpoints that change the store: the admin token when one is set; without one, open on
    a loopback listen address only."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        config = services(request).config
        if admin_endpoints_off(config):
            return error_json(AccessDenied(
                f"admin endpoints are off: this proxy listens on {config.host} without an admin token; "
                "restart it with --admin-token-file FILE (or --admin-token / HOARD_ADMIN_TOKEN)"
            ))
        if config.admin_token and not is_admin(config, request):
            return error_json(AccessDenied("this endpoint needs the X-Hoard-Admin-Token header"))
        return await handler(request)

    return wrapped


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object a request carries ({} without a body); UsageError otherwise."""
    if not request.can_read_body:
        return {}
    try:
        doc = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise UsageError("request body must be JSON") from None
    if not isinstance(doc, dict):
        raise UsageError("request body must be a JSON object")
    return doc


def v1_address(request: web.Request, route_segments: int) -> Address:
    """The address after the first ``route_segments`` segments of the raw path (3 for
    ``/v1/files/...``), each segment URL-decoded on its own.

    aiohttp matches routes on the raw segments (a quoted ``/`` is no separator there) but
    hands handlers the path decoded, where ``@refs%2Fpr%2F1/config.json`` has become
    ``@refs/pr/1/config.json``. Here the revision (after ``@`` in the repo segment) stays
    quoted for :func:`parse_address`, which unquotes it once and checks it.
    """
    raw = request.raw_path.split("?", 1)[0].split("#", 1)[0].split("/")[route_segments:]
    while raw and raw[0] == "":
        raw = raw[1:]
    decoded = [unquote(seg) for seg in raw]
    info = source_info(decoded[0]) if decoded else None
    repo_at = 3 if info is not None and decoded[1:2] and decoded[1] in info.kinds else 2
    if len(raw) > repo_at and "@" in raw[repo_at]:
        name, _, rev = raw[repo_at].partition("@")
        decoded[repo_at] = f"{unquote(name)}@{rev}"
    return parse_address("/".join(decoded))
