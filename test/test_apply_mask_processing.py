"""Apply cloud mask in QGIS: the toolbox, a model, qgis_process, the source's look, errors as messages.

The model is Improve cloud mask -> Apply cloud mask; the source layer's look is given to the
result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import processing
import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsMultiBandColorRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterRasterLayer,
    QgsProject,
    QgsRasterLayer,
)
from samples import L1C_STACK, PRODUCT_MASK, require

from cloud_mask_improver.core import apply_mask

MODEL = {"CLOUD_MODEL": "ukis-6b-l1c", "SHADOW_MODEL": "ukis-6b-l1c"}


def read(path) -> np.ndarray:
    ds = gdal.Open(str(path))
    return ds.ReadAsArray()


def step(algorithm_id: str, child_id: str, sources: dict) -> QgsProcessingModelChildAlgorithm:
    """A model step with ``sources`` wired and every other input at its default, as the modeler sets it."""
    child = QgsProcessingModelChildAlgorithm(algorithm_id)
    child.setChildId(child_id)
    algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    for definition in algorithm.parameterDefinitions():
        name = definition.name()
        if name in sources:
            child.addParameterSources(name, [sources[name]])
        elif not definition.isDestination() and definition.defaultValue() is not None:
            child.addParameterSources(
                name, [QgsProcessingModelChildParameterSource.fromStaticValue(definition.defaultValue())]
            )
    return child


def improve_then_apply() -> QgsProcessingModelAlgorithm:
    """The model a user draws: the scene into Improve cloud mask, its mask into Apply cloud mask."""
    model = QgsProcessingModelAlgorithm("Cloud-free scene", "", "")
    for name, label in (("S2", "Sentinel-2 raster"), ("PRODUCT", "Product mask")):
        model.addModelParameter(QgsProcessingParameterRasterLayer(name, label), QgsProcessingModelParameter(name))
    static = QgsProcessingModelChildParameterSource.fromStaticValue
    scene = QgsProcessingModelChildParameterSource.fromModelParameter("S2")
    model.addChildAlgorithm(
        step(
            "cloudmask:improvecloudmask",
            "improve",
            {
                "S2_RASTER": scene,
                "PRODUCT_MASK": QgsProcessingModelChildParameterSource.fromModelParameter("PRODUCT"),
                **{k: static(v) for k, v in MODEL.items()},
            },
        )
    )
    apply_step = step(
        "cloudmask:applymask",
        "apply",
        {"INPUT": scene, "MASK": QgsProcessingModelChildParameterSource.fromChildOutput("improve", "MASK")},
    )
    output = QgsProcessingModelOutput("masked", "Cloud-free scene")
    output.setChildOutputName("OUTPUT")
    apply_step.setModelOutputs({"masked": output})
    model.addChildAlgorithm(apply_step)
    return model


@pytest.fixture(scope="module")
def toolbox(provider, tmp_path_factory):
    """The sample's mask by Improve cloud mask, and the sample masked with it in the toolbox."""
    require(L1C_STACK, PRODUCT_MASK)
    folder = tmp_path_factory.mktemp("apply")
    mask = str(folder / "mask.tif")
    processing.run(
        "cloudmask:improvecloudmask",
        {"S2_RASTER": str(L1C_STACK), "PRODUCT_MASK": str(PRODUCT_MASK), "MASK": mask, **MODEL},
    )
    out = str(folder / "masked.tif")
    result = processing.run("cloudmask:applymask", {"INPUT": str(L1C_STACK), "MASK": mask, "OUTPUT": out})
    return mask, out, result


def test_the_toolbox_masks_the_sample_with_its_mask(toolbox):
    mask, out, result = toolbox
    values, before, after = read(mask), read(L1C_STACK), read(out)
    dropped = values != 0
    assert (after[:, dropped] == 0).all() and np.array_equal(after[:, ~dropped], before[:, ~dropped])
    assert result["MASKED_FRACTION"] == pytest.approx(dropped.mean())
    assert result["OUTPUT"] == out


def test_the_classes_chosen_by_number_are_the_ones_masked(toolbox, tmp_path):
    out = str(tmp_path / "shadow.tif")
    processing.run("cloudmask:applymask", {"INPUT": str(L1C_STACK), "MASK": toolbox[0], "CLASSES": [1], "OUTPUT": out})
    values, before, after = read(toolbox[0]), read(L1C_STACK), read(out)
    shadow = values == 2
    assert (after[:, shadow] == 0).all() and np.array_equal(after[:, ~shadow], before[:, ~shadow])


def test_a_model_from_improve_to_apply_gives_the_same_raster(toolbox, tmp_path):
    model = improve_then_apply()
    ok, problems = model.validate()
    assert ok, problems
    out = str(tmp_path / "model.tif")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    # "apply:masked" on QGIS 3.22; QGIS 3.40 names it after the description ("cloudfree_scene")
    masked = next(p.name() for p in model.destinationParameterDefinitions() if p.description() == "Cloud-free scene")
    results, ok = model.run({"S2": str(L1C_STACK), "PRODUCT": str(PRODUCT_MASK), masked: out}, context, feedback)
    assert ok and results[masked] == out
    assert np.array_equal(read(out), read(toolbox[1]))


def test_qgis_process_gives_the_same_raster(toolbox, plugin_dir, tmp_path):
    exe = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
    env = dict(
        os.environ,
        QGIS_PLUGINPATH=str(plugin_dir),
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"),
    )
    subprocess.run([exe, "plugins", "enable", "cloud_mask_improver"], env=env, capture_output=True, check=True)
    out = tmp_path / "qp.tif"
    done = subprocess.run(
        [
            exe,
            "run",
            "cloudmask:applymask",
            "--json",
            "--",
            f"INPUT={L1C_STACK}",
            f"MASK={toolbox[0]}",
            "CLASSES=0,1,2",
            f"OUTPUT={out}",
        ],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(done.stdout[done.stdout.index("{") :])["results"]
    assert np.array_equal(read(out), read(toolbox[1]))
    assert results["MASKED_FRACTION"] == pytest.approx(toolbox[2]["MASKED_FRACTION"])


def test_the_result_looks_like_the_layer_it_came_from(toolbox, tmp_path):
    project = QgsProject.instance()
    layer = QgsRasterLayer(str(L1C_STACK), "sample")
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 4, 3, 2)  # true colour: B04 B03 B02
    layer.setRenderer(renderer)
    project.addMapLayer(layer)
    try:
        result = processing.runAndLoadResults(
            "cloudmask:applymask",
            {"INPUT": layer.id(), "MASK": toolbox[0], "CLASSES": [0, 1], "OUTPUT": str(tmp_path / "styled.tif")},
        )
        (loaded,) = [m for m in project.mapLayers().values() if m.source() == result["OUTPUT"]]
        shown = loaded.renderer()
        assert isinstance(shown, QgsMultiBandColorRenderer)
        assert (shown.redBand(), shown.greenBand(), shown.blueBand()) == (4, 3, 2)
    finally:
        project.removeAllMapLayers()


def test_a_raster_that_is_not_a_mask_is_refused_with_its_fix(provider, tmp_path):
    with pytest.raises(QgsProcessingException) as err:
        processing.run(
            "cloudmask:applymask",
            {"INPUT": str(L1C_STACK), "MASK": str(L1C_STACK), "OUTPUT": str(tmp_path / "out.tif")},
        )
    assert "is not a cloud mask" in str(err.value) and "Give the mask Improve cloud mask wrote" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_cancel_in_the_toolbox_writes_nothing(toolbox, tmp_path, monkeypatch):
    monkeypatch.setattr(apply_mask, "WINDOW", 128)
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda value: feedback.cancel() if value > 30 else None)
    with pytest.raises(QgsProcessingException, match="Cancelled: no output was written"):
        processing.run(
            "cloudmask:applymask",
            {"INPUT": str(L1C_STACK), "MASK": toolbox[0], "OUTPUT": str(tmp_path / "out.tif")},
            feedback=feedback,
        )
    assert list(tmp_path.iterdir()) == []


def test_the_algorithm_is_listed_with_its_public_parameters(provider):
    algorithm = QgsApplication.processingRegistry().algorithmById("cloudmask:applymask")
    assert algorithm.displayName() == "Apply cloud mask"
    assert [p.name() for p in algorithm.parameterDefinitions()] == ["INPUT", "MASK", "CLASSES", "BUFFER", "OUTPUT"]
    assert algorithm.parameterDefinition("CLASSES").defaultValue() == [0, 1, 2]


def test_the_batch_algorithm_writes_masked_imagery_when_asked(provider, tmp_path):
    from s2_product import build_product

    product = build_product(tmp_path / "products", "L2A", "04.00")
    out = tmp_path / "out"
    result = processing.run(
        "cloudmask:improvecloudmaskbatch",
        {
            "INPUTS": [str(product.zip)],
            "OUTPUT_FOLDER": str(out),
            "CLOUD_MODEL": "ukis-6b-l2a",
            "WRITE_MASKED": True,
            "MASKED_BANDS": "B04,B03,B02",
        },
    )
    masked = out / "T33TUK_20230615T100559_L2A_masked.tif"
    assert result["OUTPUT_FOLDER"] == str(out) and gdal.Open(str(masked)).RasterCount == 3
    mask = read(out / "T33TUK_20230615T100559_L2A.tif")
    assert (read(masked)[:, mask != 0] == 0).all()
    with pytest.raises(QgsProcessingException, match="Unknown band name 'B4x'"):
        processing.run(
            "cloudmask:improvecloudmaskbatch",
            {
                "INPUTS": [str(product.zip)],
                "OUTPUT_FOLDER": str(tmp_path / "o2"),
                "WRITE_MASKED": True,
                "MASKED_BANDS": "B4x",
            },
        )
