"""What the proxy writes into response headers: text that may echo a client, and links to itself.

* :func:`header_text`: a header value made of printable ASCII only, bounded. aiohttp refuses CR
  and LF in a header (the response is lost and the connection dropped) and clients decode
  header bytes as Latin-1, so a NUL, a newline or a non-ASCII character from a request path
  is written as an escape (``\\x00``, ``\\u2713``), never as itself.
* :func:`public_base`: where absolute links point — the configured public URL (``--public-url``,
  ``HOARD_PUBLIC_URL``), else the listen address. Never the client's ``Host`` header: a shared
  cache in front of the proxy could store a link to another host, and clients follow a
  ``Link: rel="next"`` with their token.
* :func:`next_link`: the Hub's ``rel="next"`` link re-rooted on the proxy; a link to anywhere
  but the Hub is dropped.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

from aiohttp import web

from .service import ProxyConfig

__all__ = ["header_text", "public_base", "next_link"]

_HEADER_MAX = 500  # a message longer than this is cut in a header (a JSON body has it whole)
_LINK_MAX = 8192  # aiohttp's default limit on one header line
_LINK = re.compile(r"<([^>]*)>([^,<]*)")
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def header_text(text: str, limit: int = _HEADER_MAX) -> str:
    """``text`` with every character outside printable ASCII written as its Python escape,
    cut to ``limit`` characters."""
    out = "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text[:limit])
    return out[:limit]


def public_base(config: ProxyConfig, request: web.BaseRequest) -> str:
    """The URL absolute links start with: ``config.public_url``, else ``http://<listen host>:
    <port>``, the port (and, on a wildcard listen address, the host) read from the socket the
    request came in on — the address the client reached, not one it claims."""
    if config.public_url:
        return config.public_url.rstrip("/")
    host, port = config.host, config.port
    sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if isinstance(sock, tuple) and len(sock) >= 2:
        port = sock[1]
        if host in _WILDCARD_HOSTS:
            host = str(sock[0])
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def next_link(value: str, at: str, endpoint: str, base: str) -> str | None:
    """The first ``rel="next"`` link of an origin's ``Link`` header ``value`` (relative ones
    resolved against ``at``), moved from ``endpoint`` to ``base``; None if there is none on
    ``endpoint``."""
    for match in _LINK.finditer(value):
        target, params = urljoin(at, match.group(1)), match.group(2)
        if "next" in params and target.startswith(endpoint + "/"):
            return header_text(f'<{base}{target[len(endpoint):]}>; rel="next"', limit=_LINK_MAX)
    return None
