"""Who may see what of restricted content through ``/v1``: one :class:`Viewer` per request.

A snapshot is *restricted* when its origin gives its files only to some clients (a private or
gated repo, or one a parent hoard marked so: :attr:`Snapshot.restricted`). Its bytes, and the
BLAKE3s that name them at ``/v1/blobs``, go only to a client whose token the origin accepts for
that repo; listings and plans (models, pins, gc and delete plans) never name a restricted repo
or its hashes to anyone else. The admin token holder sees every listing (but gets bytes only
with a token the origin accepts, like everyone).

The origin is asked through :meth:`Catalog.authorize`, which remembers each answer per token
for ``access_ttl`` seconds; a viewer also remembers its answers for the one request, once per
repo. Any refusal, and an origin that cannot be asked, counts as "not allowed".
"""

from __future__ import annotations

import logging

from aiohttp import web

from hoard.store.address import parse_address
from hoard.store.catalog import default_ref
from hoard.store.errors import HoardError
from hoard.store.records import Snapshot

from .origin import Credentials
from .request import bearer_token, services
from .service import Services
from .v1_common import is_admin

__all__ = ["Viewer", "viewer"]

log = logging.getLogger("hoard.v1")

#: (repo, revision, restricted) of a snapshot using a blob or an identity
Users = list[tuple[str, str, bool]]


class Viewer:
    """One request's view of the store: ``admin`` (sees every listing) and the caller's token,
    which counts for each repo as a credential of that repo's source only."""

    def __init__(self, svc: Services, token: str | None, *, admin: bool) -> None:
        self.svc = svc
        self.token = token
        self.admin = admin
        self._repos: dict[str, bool] = {}

    async def may_read(self, repo: str, revision: str) -> bool:
        """Whether the origin accepts these credentials for a restricted revision of ``repo``
        (asked once per repo and request: access is granted per repo)."""
        known = self._repos.get(repo)
        if known is not None:
            return known
        allowed = False
        snap = self.svc.store.get_snapshot(repo, revision)
        if snap is not None:
            try:
                await self.svc.catalog.authorize(parse_address(repo), revision, snap, self.creds_for(repo))
                allowed = True
            except HoardError as exc:  # refused, unknown, or the origin cannot be asked
                log.debug("%s: not shown to %s: %s", repo, self.creds_for(repo).fingerprint, exc.kind)
        self._repos[repo] = allowed
        return allowed

    def _restricted_revision(self, repo: str) -> str | None:
        """A restricted cached revision of ``repo`` (the default ref's when it is one), or None
        when every cached revision is public."""
        restricted = [rev for rev in self.svc.store.revisions(repo) if _restricted(self.svc.store.get_snapshot(repo, rev))]
        if not restricted:
            return None
        ref = self.svc.store.get_ref(repo, default_ref(repo.split("/", 1)[0]))
        return ref.revision if ref is not None and ref.revision in restricted else restricted[0]

    def creds_for(self, repo: str) -> Credentials:
        """The caller's token as a credential of ``repo``'s source."""
        return Credentials.for_source(repo.split("/", 1)[0], self.token)

    async def sees_repo(self, repo: str) -> bool:
        """Whether listings may name ``repo``: public, or admin, or a token accepted for it."""
        if self.admin:
            return True
        revision = self._restricted_revision(repo)
        return revision is None or await self.may_read(repo, revision)

    async def allowed_by(self, users: Users) -> bool:
        """Whether content used by these snapshots may go to this client: it is public when
        any of them is public, or when none knows it (nothing marks it restricted)."""
        if not users or any(not restricted for _, _, restricted in users):
            return True
        for repo, revision, _ in users:
            if await self.may_read(repo, revision):
                return True
        return False

    async def may_fetch_blob(self, b3: str) -> bool:
        """Whether ``/v1/blobs/<b3>`` serves this client. A blob no cached revision uses goes
        to the admin only (nothing says whether it was private); otherwise the admin token
        grants no bytes the origin would refuse."""
        users = self.svc.store.blob_users(b3)
        return await self.allowed_by(users) if users else self.admin

    async def sees_blob(self, b3: str) -> bool:
        """Whether listings may name the blob ``b3``."""
        return self.admin or await self.may_fetch_blob(b3)


def _restricted(snap: Snapshot | None) -> bool:
    return snap is not None and snap.restricted


def viewer(request: web.Request) -> Viewer:
    """The viewer a request speaks for: its bearer token, and whether it holds the admin token."""
    svc = services(request)
    return Viewer(svc, bearer_token(request), admin=is_admin(svc.config, request))
