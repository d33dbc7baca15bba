"""The one exception tree of hoard, and the one table that maps it to errno, HTTP and exit codes.

Every error hoard raises on purpose is a :class:`HoardError`. Where a stdlib type fits, a class
also inherits it, so ``except FileNotFoundError`` keeps working for callers that know nothing
of hoard::

    HoardError
    ├── InvalidAddress (ValueError)          a name hoard refuses: traversal, NUL, empty segment
    │   └── NameTooLong                      a segment over 255 bytes
    ├── NotFound (FileNotFoundError)         no such repo, revision or file (here or at the origin)
    │   ├── RepoNotFound
    │   ├── RevisionNotFound
    │   └── EntryNotFound                    no such file in an existing revision
    ├── AccessDenied (PermissionError)       the origin refuses this client (gated, private)
    │   └── GatedRepo                        access needs accepting the repo's conditions
    ├── RangeNotSatisfiable (ValueError)     a byte range outside the file
    ├── IntegrityError                       bytes whose length or hash does not match
    ├── OriginError                          the origin answered with a permanent error
    │   └── OriginUnavailable                transient: unreachable, 5xx, timeout (retryable)
    │       └── NotReady                     the origin answered, the content is not served yet
    ├── StoreFormatError                     an index written by an unknown format version
    ├── StoreFull (OSError)                  no space left for a blob or a partial
    ├── Busy                                 a resource is held by another process
    └── UsageError                           a command used wrongly (CLI)

Foreign exceptions (aiohttp, OSError from the kernel, lmdb) are translated into this tree at
the edge that meets them; the FUSE adapter, the HTTP server and the CLI each end with a
catch-all that maps anything else to EIO / 500 / exit 1 and logs it.
"""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass

__all__ = [
    "HoardError",
    "InvalidAddress",
    "NameTooLong",
    "NotFound",
    "RepoNotFound",
    "RevisionNotFound",
    "EntryNotFound",
    "AccessDenied",
    "GatedRepo",
    "RangeNotSatisfiable",
    "IntegrityError",
    "OriginError",
    "OriginUnavailable",
    "NotReady",
    "StoreFormatError",
    "StoreFull",
    "Busy",
    "UsageError",
    "ErrorCodes",
    "codes_for",
]


class HoardError(Exception):
    """Root of every error hoard raises on purpose."""

    #: short machine-readable kind, used in JSON error bodies and metrics labels
    kind = "internal"


class InvalidAddress(HoardError, ValueError):
    kind = "invalid_address"


class NameTooLong(InvalidAddress):
    kind = "name_too_long"


class NotFound(HoardError, FileNotFoundError):
    kind = "not_found"


class RepoNotFound(NotFound):
    kind = "repo_not_found"


class RevisionNotFound(NotFound):
    kind = "revision_not_found"


class EntryNotFound(NotFound):
    """No such file in a revision that exists; ``revision`` names it when known."""

    kind = "entry_not_found"

    def __init__(self, message: str, revision: str | None = None) -> None:
        super().__init__(message)
        self.revision = revision


class AccessDenied(HoardError, PermissionError):
    kind = "access_denied"

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class GatedRepo(AccessDenied):
    kind = "gated_repo"


class RangeNotSatisfiable(HoardError, ValueError):
    kind = "range_not_satisfiable"

    def __init__(self, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


class IntegrityError(HoardError):
    kind = "integrity"


class OriginError(HoardError):
    """The origin gave a definite, permanent answer we cannot use (not a 404/403)."""

    kind = "origin"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OriginUnavailable(OriginError):
    """The origin could not be reached or failed transiently; the caller may retry later."""

    kind = "origin_unavailable"


class NotReady(OriginUnavailable):
    """The origin is up but does not serve this yet (an Arweave transaction still pending):
    retryable like any transient fault, without saying anything bad about the origin."""

    kind = "not_ready"


class StoreFormatError(HoardError):
    kind = "store_format"


class StoreFull(HoardError, OSError):
    kind = "store_full"

    def __init__(self, message: str) -> None:
        OSError.__init__(self, _errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)  # the message alone, not "[Errno 28] ..."


class Busy(HoardError):
    kind = "busy"


class UsageError(HoardError, ValueError):
    kind = "usage"


@dataclass(frozen=True)
class ErrorCodes:
    """How one error class shows at each edge."""

    errno: int
    http_status: int
    exit_code: int


# The one mapping table. Looked up along the MRO, so a subclass without a row of its own
# inherits its parent's. Exit codes: 1 internal, 2 usage/bad input, 3 not found, 4 refused,
# 5 integrity, 6 origin, 7 store format, 8 store full, 9 busy.
_TABLE: dict[type[BaseException], ErrorCodes] = {
    HoardError: ErrorCodes(_errno.EIO, 500, 1),
    InvalidAddress: ErrorCodes(_errno.EINVAL, 400, 2),
    NameTooLong: ErrorCodes(_errno.ENAMETOOLONG, 400, 2),
    UsageError: ErrorCodes(_errno.EINVAL, 400, 2),
    NotFound: ErrorCodes(_errno.ENOENT, 404, 3),
    AccessDenied: ErrorCodes(_errno.EACCES, 403, 4),
    RangeNotSatisfiable: ErrorCodes(_errno.EINVAL, 416, 2),
    IntegrityError: ErrorCodes(_errno.EIO, 502, 5),
    OriginError: ErrorCodes(_errno.EIO, 502, 6),
    OriginUnavailable: ErrorCodes(_errno.EIO, 503, 6),
    StoreFormatError: ErrorCodes(_errno.EIO, 500, 7),
    StoreFull: ErrorCodes(_errno.ENOSPC, 507, 8),
    Busy: ErrorCodes(_errno.EBUSY, 503, 9),
}

_UNKNOWN = ErrorCodes(_errno.EIO, 500, 1)


def codes_for(exc: BaseException | type[BaseException]) -> ErrorCodes:
    """The errno, HTTP status and exit code for an exception (instance or class).

    Foreign exceptions get EIO / 500 / 1, except a few stdlib ones whose meaning is clear.
    """
    cls = exc if isinstance(exc, type) else type(exc)
    for klass in cls.__mro__:
        row = _TABLE.get(klass)
        if row is not None:
            return row
    if issubclass(cls, FileNotFoundError):
        return _TABLE[NotFound]
    if issubclass(cls, PermissionError):
        return _TABLE[AccessDenied]
    if isinstance(exc, OSError) and exc.errno == _errno.ENOSPC:
        return _TABLE[StoreFull]
    return _UNKNOWN
