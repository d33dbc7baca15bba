"""Per-request plumbing shared by the HTTP faces: the services, the caller's credentials.

The faces (Hugging Face, hoard's /v1, the Arweave gateway) and the app that mounts them all
import from here and never from each other.

Credentials: a client authenticates with ``Authorization: Bearer <token>``. The token belongs
to one origin: on the Hugging Face face it is a Hub token; on ``/v1`` it is the token of the
source the address names. :func:`credentials_for` builds :class:`Credentials` holding it for
that source only, so it can never reach another origin's host.
"""

from __future__ import annotations

from aiohttp import web

from .origin import Credentials
from .service import Services

__all__ = ["SERVICES", "services", "bearer_token", "credentials_for"]

#: the app's services (store, catalog, fetch core, metrics), set by :func:`hoard.proxy.app.make_app`
SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def credentials_for(request: web.Request, source: str) -> Credentials:
    """The caller's credentials for ``source``'s origin (and no other)."""
    return Credentials.for_source(source, bearer_token(request))
