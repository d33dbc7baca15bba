"""A fake Arweave / ar.io gateway for tests with no internet (see `gateway.FakeGateway`).

Layout: `identity` (base64url, addresses, tx ids, data roots, `FakeWallet`), `model` (txs,
blocks, the weave offset space, queries), `ritual` (what ritual-arweave's ``upload_repo``
writes), `gqlparse` + `graphql` (``POST /graphql``), `replies` (request log entries, fault
switches, the response writer), `data_routes` (ar.io ``/{id}``, ``/raw/{id}``), `node_routes`
(``/tx/...``, ``/chunk``, uploads) and `gateway` (the server, its log and switches).
"""

from .gateway import FakeGateway
from .identity import FakeWallet, b64url_decode, b64url_encode, owner_address
from .model import Tx, Weave
from .replies import GatewayFault, GatewayRecord
from .ritual import (
    MANIFEST_TYPE,
    MAX_UPLOAD_SIZE,
    RitualFile,
    RitualRepo,
    infernet_manifest,
)

__all__ = [
    "MANIFEST_TYPE",
    "MAX_UPLOAD_SIZE",
    "FakeGateway",
    "FakeWallet",
    "GatewayFault",
    "GatewayRecord",
    "RitualFile",
    "RitualRepo",
    "Tx",
    "Weave",
    "b64url_decode",
    "b64url_encode",
    "infernet_manifest",
    "owner_address",
]
