"""LightGBM text model -> ONNX, for the s2cloudless pixel classifier.

s2cloudless is published as a LightGBM booster, not as ONNX, and the plugin
runs every model through onnxruntime. We convert it once at install time with
onnxmltools (a build-time tool: neither it nor LightGBM is needed to run the
plugin, so both are imported only when a conversion is asked for).

Two details make the converted file a faithful, pinnable copy:

* LightGBM compares ``double(x) <= threshold`` in double precision, while the
  ONNX TreeEnsemble stores float32 thresholds. onnxmltools rounds each
  threshold to the *nearest* float32, which sends an input lying exactly on a
  threshold that was rounded up down the wrong branch (48 s2cloudless
  thresholds round up onto float32(DN / 10000) values that real L1C data
  takes, all at reflectance > 1). Rounding
  every threshold *down* to the largest float32 not above it makes
  ``x <= t32`` equal ``x <= threshold`` for every float32 ``x``.
* The graph name is fixed (onnxmltools otherwise uses a random UUID) and the
  opset domains are sorted (onnxmltools lists them in set order, which follows
  Python's string hashing and so differs per process), so two conversions give
  byte-identical files and a model card can pin the sha256.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..staging import replacing

TARGET_OPSET = 15
INPUT_NAME = "input"
BATCH_DIM = "N"
GRAPH_NAME = "lightgbm_classifier"
_INSTALL_HINT = "pip install onnxmltools lightgbm"


def lightgbm_text_to_onnx(model_txt: Path, onnx_out: Path, n_features: int = 10) -> None:
    """Convert a LightGBM text model into an ONNX classifier written atomically.

    The graph takes one float32 input ``input`` [N, n_features] and gives
    ``label`` [N] (int64) and ``probabilities`` [N, 2] (no ZipMap, so
    onnxruntime returns plain arrays).
    """
    lightgbm, convert_lightgbm, float_tensor_type = _converter_modules()
    booster = lightgbm.Booster(model_file=str(model_txt))
    if booster.num_feature() != n_features:
        raise ValueError(f"{Path(model_txt).name} reads {booster.num_feature()} features, expected {n_features}.")
    dump = booster.dump_model()
    _reject_categorical(dump)
    model = convert_lightgbm(
        booster,
        name=GRAPH_NAME,
        target_opset=TARGET_OPSET,
        zipmap=False,
        initial_types=[(INPUT_NAME, float_tensor_type([None, n_features]))],
    )
    ensemble = _tree_ensemble_node(model)
    _round_thresholds_down(ensemble, dump["tree_info"])
    _drop_attribute(ensemble, "nodes_hitrates")
    _name_batch_dimension(model)
    sort_opsets(model)
    _check(model)
    _write_atomically(model.SerializeToString(), Path(onnx_out))


def _write_atomically(data: bytes, target: Path) -> None:
    """Write ``data`` to ``target`` via a temporary file in the same folder.

    A reader (or an interrupted install) then sees either the old file or
    the complete new one, never a truncated model.
    """
    # A plain open() (not mkstemp) so the file gets the usual umask permissions.
    with replacing(target) as tmp, open(tmp, "xb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def float32_at_most(value: float) -> float:
    """The largest float32 that is <= ``value`` (so float32 ``x <= it`` iff ``x <= value``)."""
    with np.errstate(over="ignore"):
        nearest = np.float32(value)
    if float(nearest) > value:
        nearest = np.nextafter(nearest, np.float32(-np.inf))
    return float(nearest)


def sort_opsets(model: Any) -> None:
    """Put the model's opset imports in domain order, whatever order they came in."""
    ordered = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in ordered:
        model.opset_import.add(domain=domain, version=version)


def _converter_modules() -> tuple[Any, Any, Any]:
    """Import the build-time converters, or say exactly what to install."""
    try:
        import lightgbm
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType
    except ImportError as err:
        raise ImportError(
            f"Converting a LightGBM model to ONNX needs onnxmltools and lightgbm ({err}). "
            f"Install them with: {_INSTALL_HINT}"
        ) from err
    return lightgbm, convert_lightgbm, FloatTensorType


def _reject_categorical(dump: dict) -> None:
    """Refuse categorical splits.

    onnxmltools rewrites them into extra nodes, so our node-by-node threshold fix would not line up."""
    stack = [tree["tree_structure"] for tree in dump["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            continue
        if node["decision_type"] != "<=":
            raise ValueError(f"Only numerical (<=) LightGBM splits are supported, found {node['decision_type']!r}.")
        stack += [node["left_child"], node["right_child"]]


def _tree_ensemble_node(model: Any) -> Any:
    """The one TreeEnsembleClassifier node onnxmltools emits."""
    nodes = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(nodes) != 1:
        raise ValueError(f"Expected one TreeEnsembleClassifier, found {len(nodes)}.")
    return nodes[0]


def _attribute(node: Any, name: str) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return attribute
    raise KeyError(name)


def _round_thresholds_down(ensemble: Any, trees: list[dict]) -> None:
    """Replace each split's float32 threshold with the exact one (see module doc).

    Walks LightGBM's dump and the ONNX arrays together (left child = true
    branch), so it does not depend on how onnxmltools numbers the nodes.
    """
    values = list(_attribute(ensemble, "nodes_values").floats)
    position = _node_positions(ensemble)
    true_ids = _attribute(ensemble, "nodes_truenodeids").ints
    false_ids = _attribute(ensemble, "nodes_falsenodeids").ints
    features = _attribute(ensemble, "nodes_featureids").ints
    modes = _attribute(ensemble, "nodes_modes").strings
    for tree_id, tree in enumerate(trees):
        stack = [(tree["tree_structure"], 0)]
        while stack:
            node, node_id = stack.pop()
            at = position[(tree_id, node_id)]
            if "split_feature" not in node:
                _expect(modes[at] == b"LEAF", tree_id, node_id)
                continue
            _expect(modes[at] == b"BRANCH_LEQ" and features[at] == node["split_feature"], tree_id, node_id)
            values[at] = float32_at_most(float(node["threshold"]))
            stack += [(node["left_child"], true_ids[at]), (node["right_child"], false_ids[at])]
    floats = _attribute(ensemble, "nodes_values").floats
    del floats[:]
    floats.extend(values)


def _node_positions(ensemble: Any) -> dict[tuple[int, int], int]:
    tree_ids = _attribute(ensemble, "nodes_treeids").ints
    node_ids = _attribute(ensemble, "nodes_nodeids").ints
    if len(tree_ids) != len(node_ids):  # zip(strict=True) needs Python 3.10
        raise ValueError(f"The converted ensemble lists {len(tree_ids)} tree ids for {len(node_ids)} nodes.")
    return {(t, n): i for i, (t, n) in enumerate(zip(tree_ids, node_ids))}


def _expect(ok: bool, tree_id: int, node_id: int) -> None:
    if not ok:
        raise ValueError(
            f"ONNX tree {tree_id} node {node_id} does not match the LightGBM "
            "tree; this onnxmltools version lays trees out differently."
        )


def _drop_attribute(node: Any, name: str) -> None:
    """Remove an optional attribute (hit rates are all 1.0 and unused: ~1.3 MB)."""
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)


def _name_batch_dimension(model: Any) -> None:
    """Give input and outputs one symbolic batch dim ``N``.

    onnxmltools declares the label output as [1], which makes onnxruntime
    warn on every run with more than one pixel.
    """
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM


def _check(model: Any) -> None:
    import onnx

    onnx.checker.check_model(model)
