"""A fake GitHub (API, raw, media, web, codeload and LFS storage origins) and, on top of it,
a fake ONNX Model Hub (`onnxhub`). See `fake.FakeGitHub`."""

from .fake import FakeGitHub, FileSpec
from .git import DEFAULT_LFS_PATTERNS, Blob, Commit, GitRepo, lfs_pointer, object_sha, parse_pointer
from .hosts import WrongBytes
from .onnxhub import OnnxEntry, OnnxHub
from .servers import FakeServers, Fault, RequestRecord

__all__ = [
    "DEFAULT_LFS_PATTERNS",
    "Blob",
    "Commit",
    "FakeGitHub",
    "FakeServers",
    "Fault",
    "FileSpec",
    "GitRepo",
    "OnnxEntry",
    "OnnxHub",
    "RequestRecord",
    "WrongBytes",
    "lfs_pointer",
    "object_sha",
    "parse_pointer",
]
