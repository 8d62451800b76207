"""Small generated ONNX models for contract tests (shapes, scaling, errors).

Most are per-pixel (1x1 convolutions), so their exact output for any input is
known in numpy, whatever the tiling; :func:`tile_mean_model` depends on the whole
tile, to check where tiles go.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv1x1_model(
    path: Path, weights: np.ndarray, bias: np.ndarray, tile: int | None, input_name: str = "input", opset: int = 17
) -> Path:
    """A network computing ``weights @ x + bias`` at every pixel: [N, C, H, W] -> [N, K, H, W]."""
    k, c = weights.shape
    size = tile if tile else "h"
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["n", c, size, tile or "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", k, size, tile or "w"])
    w = numpy_helper.from_array(weights.reshape(k, c, 1, 1).astype(np.float32), "w")
    b = numpy_helper.from_array(bias.astype(np.float32), "b")
    node = helper.make_node("Conv", [input_name, "w", "b"], ["output"])
    graph = helper.make_graph([node], "conv1x1", [x], [y], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def expected(weights: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    """What the 1x1 model returns for ``x`` of shape [C, H, W]."""
    return np.einsum("kc,chw->khw", weights.astype(np.float64), x.astype(np.float64)) + bias[:, None, None]


def write_card(path: Path, **fields) -> Path:
    card = {
        "id": "test-model",
        "title": "Test model",
        "licence": "GPL-2.0-or-later",
        "level": "L2A",
        "bands": ["B02", "B03", "B04", "B08"],
        "scaling": {"factor": 0.0001},
        "tiling": {"scheme": "mirror-tukey", "tile": 64, "overlap": 0.2},
        "output": {"activation": "softmax", "cloud": [1], "shadow": [2]},
        "thresholds": {"cloud": 0.5, "shadow": 0.5},
    }
    for key, value in fields.items():
        card[key] = value
    card.setdefault("file", path.with_suffix(".onnx").name)
    path.write_text(json.dumps(card))
    return path


def tile_mean_model(
    path: Path, weights: np.ndarray, context: np.ndarray, bias: np.ndarray, tile: int, opset: int = 17
) -> Path:
    """A network whose output depends on the whole tile it sees.

    At every pixel, ``weights @ x + context @ mean(x over the tile) + bias``. Where a tile is placed, and
    which tile's output a pixel keeps, shows in every pixel (unlike the 1x1 models)."""
    k, c = weights.shape
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", c, tile, tile])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", k, tile, tile])
    w = numpy_helper.from_array(weights.reshape(k, c, 1, 1).astype(np.float32), "w")
    v = numpy_helper.from_array(context.reshape(k, c, 1, 1).astype(np.float32), "v")
    b = numpy_helper.from_array(bias.astype(np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["local"]),
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=1),
        helper.make_node("Conv", ["mean", "v"], ["around"]),
        helper.make_node("Add", ["local", "around"], ["output"]),
    ]
    graph = helper.make_graph(nodes, "tile_mean", [x], [y], [w, v, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tile_mean_expected(weights: np.ndarray, context: np.ndarray, bias: np.ndarray, tile: np.ndarray) -> np.ndarray:
    """What :func:`tile_mean_model` returns for one tile [C, T, T]."""
    tile = tile.astype(np.float64)
    around = context.astype(np.float64) @ tile.mean(axis=(1, 2))
    return expected(weights, bias, tile) + around[:, None, None]
