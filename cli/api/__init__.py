"""hoard's Python API: model files by address, shaped like the tools users already call.

``import hoard`` is cheap: nothing below is imported until it is first used (module
``__getattr__``), so the ``hoard`` command, which imports this package first, pays nothing.
Configuration is the command's: ``HOARD_HOME``, ``HOARD_*``, each source's variables
(``HF_TOKEN``...) and ``$HOARD_HOME/config.toml`` (:mod:`hoard._runtime`).

Files::

    hoard.path("huggingface/openai-community/gpt2/config.json")   # -> str, complete and verified
    with hoard.open("arweave/<owner>/<repo>/model.onnx") as f:    # read-only, fetched lazily
        f.seek(1 << 20); f.read(4096)
    hoard.prefetch("huggingface/org/model", include=["*.safetensors"])
    hoard.ls("huggingface/")          # what `hoard ls --json` prints
    hoard.info("huggingface/org/model/config.json")   # what `hoard info --json` prints

Other tools' calls::

    path, info = hoard.download_model(source="torchvision", model_id="resnet18")
    artifact = hoard.ModelManager().download_model("arweave/<owner>/<repo>:model.onnx")
    hoard.onnx_hub.load("mnist")

Errors are hoard's (:mod:`hoard.store.errors`, re-exported as :data:`errors`): ``NotFound``
is a ``FileNotFoundError``, ``AccessDenied`` a ``PermissionError``, and every one is a
``HoardError``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hoard.store import errors

    from . import onnx_hub
    from ._downloads import ModelInfo, download_model
    from ._files import PrefetchSummary, open, path, prefetch
    from ._inspect import info, ls
    from ._ritual import ModelArtifact, ModelManager

__all__ = [
    "path",
    "open",
    "prefetch",
    "PrefetchSummary",
    "ls",
    "info",
    "download_model",
    "ModelInfo",
    "ModelManager",
    "ModelArtifact",
    "onnx_hub",
    "errors",
]

#: public name -> (module, attribute); attribute None: the module itself
_LAZY: dict[str, tuple[str, str | None]] = {
    "path": ("hoard._files", "path"),
    "open": ("hoard._files", "open"),
    "prefetch": ("hoard._files", "prefetch"),
    "PrefetchSummary": ("hoard._files", "PrefetchSummary"),
    "ls": ("hoard._inspect", "ls"),
    "info": ("hoard._inspect", "info"),
    "download_model": ("hoard._downloads", "download_model"),
    "ModelInfo": ("hoard._downloads", "ModelInfo"),
    "ModelManager": ("hoard._ritual", "ModelManager"),
    "ModelArtifact": ("hoard._ritual", "ModelArtifact"),
    "onnx_hub": ("hoard.onnx_hub", None),
    "errors": ("hoard.store.errors", None),
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it (the next access is a plain lookup)."""
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'hoard' has no attribute {name!r}")
    module = importlib.import_module(target[0])
    value = module if target[1] is None else getattr(module, target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
