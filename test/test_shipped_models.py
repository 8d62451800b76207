"""The shipped modeler models as the modeler sees them: valid, with the algorithms' defaults and pickers.

The same pickers as the algorithms (algorithms/workflow_model.py, algorithms/product_model.py)."""

import os

import pytest
from qgis.core import Qgis, QgsApplication, QgsProcessingModelChildParameterSource

# QGIS >= 3.26 names the kinds of a step's input in Qgis; 3.22 on the class itself.
STATIC = (
    getattr(getattr(Qgis, "ProcessingModelChildParameterSource", None), "StaticValue", None)
    or QgsProcessingModelChildParameterSource.StaticValue
)

MODELS = ["cloudmask:improvecloudmaskmodel", "cloudmask:improvefromproductmodel"]
CHOSEN = {("improve", "PRODUCT_MASK_KIND")}  # the product chain reads its mask as SCL on purpose


@pytest.fixture(params=MODELS)
def model(request, provider):
    return QgsApplication.processingRegistry().createAlgorithmById(request.param)


def test_the_modeler_finds_nothing_missing(model):
    """An unset mandatory input draws the step red in the modeler and refuses to run."""
    ok, issues = model.validate()
    assert ok, issues


def test_every_step_input_left_open_takes_the_algorithms_default(model):
    for child_id, child in model.childAlgorithms().items():
        sources = child.parameterSources()
        for definition in child.algorithm().parameterDefinitions():
            if definition.isDestination() or definition.defaultValue() is None:
                continue
            assert definition.name() in sources, f"{child_id}: {definition.name()} is unset"
            source = sources[definition.name()][0]
            if source.source() == STATIC and (child_id, definition.name()) not in CHOSEN:
                assert source.staticValue() == definition.defaultValue(), f"{child_id}: {definition.name()}"


def test_model_inputs_get_the_installed_model_picker(model):
    for name in ("CLOUD_MODEL", "SHADOW_MODEL"):
        wrapper = model.parameterDefinition(name).metadata().get("widget_wrapper", {})
        assert wrapper.get("class", "").endswith("ui.processing_wrappers.ModelWrapper"), name
    assert model.parameterDefinition("SHADOW_MODEL").metadata()["widget_wrapper"]["shadow"] is True


def test_the_model_with_its_defaults_gives_the_algorithms_mask(provider, tmp_path):
    """Left at their defaults, the model decides as 'Improve cloud mask' does.

    By the UKIS model's most likely class, the rule recorded in the probability rasters (the
    seed's thresholds 0.3 / 0.2 give another mask). Its probability steps run on the raster's
    own grid: the algorithm's RESOLUTION 0."""
    import numpy as np
    import processing
    from osgeo import gdal
    from samples import L1C_STACK, PRODUCT_MASK, model_file, require

    require(L1C_STACK, PRODUCT_MASK)
    model_file("ukis-4b-l1c")
    sample, product = str(tmp_path / "s2.tif"), str(tmp_path / "pm.tif")
    gdal.Translate(sample, str(L1C_STACK), srcWin=[0, 0, 512, 256])
    gdal.Translate(product, str(PRODUCT_MASK), srcWin=[0, 0, 512, 256])
    common = {"S2_RASTER": sample, "PRODUCT_MASK": product, "CLOUD_MODEL": "ukis-4b-l1c", "SHADOW_MODEL": "ukis-4b-l1c"}
    algorithm = processing.run(
        "cloudmask:improvecloudmask", {**common, "RESOLUTION": 0, "MASK": str(tmp_path / "a.tif")}
    )
    model = processing.run("cloudmask:improvecloudmaskmodel", {**common, "merge:MASK": str(tmp_path / "m.tif")})
    a = gdal.Open(algorithm["MASK"]).ReadAsArray()
    m = gdal.Open(model["merge:MASK"]).ReadAsArray()
    assert np.array_equal(a, m), f"{np.mean(a != m):.2%} of the pixels differ"


def run_with_qgis_process(plugin_dir, tmp_path, params):
    """qgis_process checks the values on the registry's instance of the model (not a fresh one)."""
    import shutil
    import subprocess

    exe = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
    env = dict(
        os.environ,
        QGIS_PLUGINPATH=str(plugin_dir),
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"),
    )
    subprocess.run([exe, "plugins", "enable", "cloud_mask_improver"], env=env, capture_output=True, check=True)
    done = subprocess.run(
        [exe, "run", "cloudmask:improvecloudmaskmodel", "--", *(f"{k}={v}" for k, v in params.items())],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    return done.stdout + done.stderr


@pytest.mark.parametrize("how", ["processing.run", "qgis_process"])
def test_an_output_named_for_another_format_is_refused_before_any_step_runs(provider, plugin_dir, tmp_path, how):
    """An output named mask.gpkg is refused before any step runs.

    Not by the merge step only after the probabilities have been computed, with processing.run
    saying only 'Error encountered while running Merge'."""
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback
    from samples import L1C_STACK, require

    require(L1C_STACK)
    out = tmp_path / "out"
    out.mkdir()
    params = {"S2_RASTER": str(L1C_STACK), "merge:MASK": str(out / "mask.gpkg")}
    if how == "qgis_process":
        said = run_with_qgis_process(plugin_dir, tmp_path, params)
    else:
        feedback = QgsProcessingFeedback()
        with pytest.raises(QgsProcessingException) as err:
            processing.run("cloudmask:improvecloudmaskmodel", params, feedback=feedback)
        said = str(err.value) + feedback.textLog()
    assert "GeoPackage" in said and ".tif name" in said, said
    assert "Models:" not in said  # no step ran
    assert os.listdir(out) == []
