"""The names of the ``torch`` source: how torch's cache directory maps onto origins.

``torch.hub`` keeps everything under ``$TORCH_HOME/hub`` (shared/reference/sources.md §5),
and the ``torch`` source lays its addresses out the same way, so that
``TORCH_HOME=/models/torch`` finds them in the mount:

* ``torch/hub/checkpoints/<file>`` — weights, as ``load_state_dict_from_url`` caches them:
  the file is ``<torch_url>/models/<file>``. torch's own rule (``HASH_REGEX``) reads a
  sha256 prefix from the name: the first ``-<hex>.`` (``resnet18-f37072fd.pth`` →
  ``f37072fd``); :func:`weights_expected` applies exactly that rule. A name without one is
  verified by its length only (torch then checks nothing either).
* ``torch/hub/<owner>_<repo>_<ref>/...`` — the code of GitHub's ``owner/repo`` at ``ref``,
  as ``torch.hub.load("owner/repo:ref", ...)`` extracts it (a ``/`` in the ref becomes
  ``_``). GitHub owners hold no ``_`` (letters, digits, ``-``), so the owner ends at the
  first ``_``; repo names and refs may hold ``_``, so ``<repo>_<ref>`` can split several
  ways: :func:`hub_candidates` lists them, the longest repo name first, and the source asks
  GitHub which exists.
* ``torch/hub/trusted_list`` — torch.hub's list of trusted repos (a file of the mount, not
  an address: :mod:`._torch_trust`).

Also here: :func:`torchvision_checkpoint`, the ``torchvision/<model>`` form ``hoard prefetch``
accepts (the default weights' URL from torchvision's registry, when torchvision is installed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from hoard.store.address import Address
from hoard.store.errors import EntryNotFound, InvalidAddress, NotFound, UsageError
from hoard.store.records import ExpectedHash

from ._github_api import repo_path

__all__ = [
    "SOURCE",
    "HUB",
    "CHECKPOINTS",
    "TRUSTED_LIST",
    "WEIGHTS_PATH",
    "PYTORCH_DOWNLOADS",
    "HubName",
    "hub_candidates",
    "normalized_ref",
    "weights_expected",
    "check_weights_name",
    "weights_url",
    "torchvision_checkpoint",
    "checkpoint_of_url",
]

SOURCE = "torch"
#: the one owner: torch's hub directory
HUB = "hub"
#: the repo of weights files (``$TORCH_HOME/hub/checkpoints``)
CHECKPOINTS = "checkpoints"
#: torch.hub's trust file, a name of the hub directory that is no repo
TRUSTED_LIST = "trusted_list"
#: where weights live under ``torch_url``
WEIGHTS_PATH = "/models/"
#: the host torchvision's registry names in every weights URL; ``torch_url`` stands for it
PYTORCH_DOWNLOADS = "https://download.pytorch.org"

#: torch.hub's own rule (``torch.hub.HASH_REGEX``): the first ``-<hex>.`` of a file name
_HASH = re.compile(r"-([a-f0-9]*)\.")
_SHA256_HEX = 64
#: weights names hoard looks up: what a URL path segment holds plainly (no '%', '?', '#')
_WEIGHTS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=,@~-]{0,199}")


@dataclass(frozen=True)
class HubName:
    """One reading of a hub directory name: GitHub's ``owner/repo`` and the ref as torch
    wrote it in the name (``/`` turned into ``_``)."""

    owner: str
    repo: str
    ref: str

    @property
    def github(self) -> Address:
        return Address("github", self.owner, self.repo)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"


def normalized_ref(ref: str) -> str:
    """A ref as torch.hub writes it in a directory name (``feature/x`` → ``feature_x``)."""
    return ref.replace("/", "_")


def hub_candidates(name: str) -> list[HubName]:
    """Every ``owner/repo`` + ref that the hub directory ``name`` can stand for, the longest
    repo name first; only names GitHub could have. Empty when ``name`` is no hub directory."""
    owner, sep, rest = name.partition("_")
    if not sep or not _github_name(owner, "x"):
        return []
    cuts = [i for i, c in enumerate(rest) if c == "_"]
    out = []
    for i in reversed(cuts):
        repo, ref = rest[:i], rest[i + 1 :]
        if ref and _github_name(owner, repo):
            out.append(HubName(owner, repo, ref))
    return out


def _github_name(owner: str, repo: str) -> bool:
    try:
        repo_path(Address("github", owner, repo))
    except NotFound:
        return False
    return True


def check_weights_name(path: str, revision: str) -> str:
    """A weights file name: one plain segment (torch caches by basename, so checkpoints has
    no folders). EntryNotFound for anything else, which no weights URL can name."""
    if not _WEIGHTS_NAME.fullmatch(path):
        raise EntryNotFound(f"{SOURCE}/{HUB}/{CHECKPOINTS}/{path[:200]}: not a weights file name "
                            "(checkpoints holds files named as in their URL, no folders)", revision)  # fmt: skip
    return path


def weights_expected(name: str) -> ExpectedHash | None:
    """The sha256 (prefix) a weights name promises by torch's rule, or None without one.
    A 64-digit match is the whole sha256; a longer one can be no sha256's prefix (refused)."""
    match = _HASH.search(name)
    digits = match.group(1) if match else ""
    if not digits:
        return None
    if len(digits) > _SHA256_HEX:
        raise InvalidAddress(f"{name[:200]}: its hash part ({len(digits)} hex digits) cannot be a sha256 prefix")
    return ExpectedHash("sha256", digits, prefix=len(digits) < _SHA256_HEX)


def weights_url(base: str, name: str) -> str:
    """``<torch_url>/models/<name>``."""
    return base.rstrip("/") + WEIGHTS_PATH + quote(name, safe="._+=,@~-")


def checkpoint_of_url(url: str, base: str) -> str:
    """The checkpoints address of a weights URL under ``<torch_url>/models/``; UsageError for
    any other URL (torch caches it by the same basename, but hoard looks names up only there)."""
    parts = urlsplit(url)
    root = urlsplit(base.rstrip("/") + WEIGHTS_PATH)
    same_host = (parts.scheme, parts.netloc) == (root.scheme, root.netloc) or (
        parts.netloc == root.netloc and {parts.scheme, root.scheme} == {"http", "https"}
    )
    name = unquote(parts.path[len(root.path) :]) if parts.path.startswith(root.path) else ""
    if not same_host or not name or "/" in name or not _WEIGHTS_NAME.fullmatch(name):
        raise UsageError(f"{url}: not a weights file under {base.rstrip('/')}{WEIGHTS_PATH} (--torch-url); "
                         "fetch it as a url/... address instead")  # fmt: skip
    return f"{SOURCE}/{HUB}/{CHECKPOINTS}/{name}"


def torchvision_checkpoint(model: str, base: str) -> str:
    """``torchvision/<model>`` (``resnet18``, or a weights enum member such as
    ``ResNet50_Weights.IMAGENET1K_V2``) → the checkpoints address of its weights (the
    builder's default weights for a model name), from torchvision's registry."""
    try:
        import torchvision.models as models  # an optional, heavy import: only for this form
    except ImportError as exc:
        instead = f"{SOURCE}/{HUB}/{CHECKPOINTS}/<file>"
        raise UsageError(f"torchvision/{model}: torchvision is not installed here ({exc}); "
                         f"prefetch its weights by name instead: {instead}") from None  # fmt: skip
    try:
        if "." in model:
            weights = models.get_weight(model)
        else:
            weights = models.get_model_weights(model).DEFAULT
    except (ValueError, KeyError, AttributeError) as exc:
        raise UsageError(f"torchvision/{model}: torchvision knows no such model or weights ({exc})") from None
    url = str(weights.url)
    # the registry names download.pytorch.org whatever --torch-url says (a mirror of it): the
    # file name is what matters, as torch caches by it; a URL elsewhere is read against base
    canonical = urlsplit(url).netloc == urlsplit(PYTORCH_DOWNLOADS).netloc
    return checkpoint_of_url(url, PYTORCH_DOWNLOADS if canonical else base)
