"""``hoard.onnx_hub``: ``onnx.hub``'s functions over hoard (:mod:`hoard.proxy.onnx_hub`).

``from hoard import onnx_hub as hub`` then ``hub.load("mnist")``, ``hub.list_models()``,
``hub.get_model_info(...)``, ``hub.download_model_with_test_data(...)``: the same arguments
and results as onnx 1.20.1's ``onnx.hub``, every file read through hoard's store (see
:mod:`hoard.proxy.onnx_hub` for what differs).
"""

from __future__ import annotations

from hoard.proxy.onnx_hub import (
    DEFAULT_REPO,
    ModelInfo,
    download_model_with_test_data,
    get_dir,
    get_model_info,
    list_models,
    load,
    set_dir,
)

__all__ = ["ModelInfo", "list_models", "get_model_info", "load", "download_model_with_test_data",
           "get_dir", "set_dir", "DEFAULT_REPO"]  # fmt: skip
