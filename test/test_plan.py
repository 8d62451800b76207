"""A run resolved once: what the plan decides, before any pixel is read."""

import dataclasses

import numpy as np
import pytest
from osgeo import gdal
from rasters import write_raster
from samples import L1C_STACK, model_file, require

from cloud_mask_improver.core import merge, pipeline
from cloud_mask_improver.core.errors import CloudMaskError
from cloud_mask_improver.core.raster import RasterError
from cloud_mask_improver.core.sentinel2 import product


def improve_request(tmp_path, **kw):
    require(L1C_STACK)
    probability = pipeline.ProbabilityRequest(str(L1C_STACK), **kw.pop("probability", {}))
    return pipeline.ImproveRequest(
        probability, kw.pop("product_mask", None), merge.MergeSettings(), mask=str(tmp_path / "mask.tif"), **kw
    )


def test_the_plan_chooses_the_default_models_and_leaves_the_request_alone(tmp_path):
    model_file("ukis-6b-l1c")
    request = improve_request(tmp_path)
    before = dataclasses.replace(request)
    plan = pipeline.plan(request)
    assert request == before  # nothing written back into the caller's request
    assert plan.probability.level == "L1C"
    # The best ranked (lowest rank) of the level's cards; ukis-6b-l1c gives shadow too, so it
    # is also the shadow model, and the run has one network.
    assert plan.probability.cloud_models == ("ukis-6b-l1c",)
    assert plan.probability.shadow_model == "ukis-6b-l1c" and len(plan.probability.models) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.mask = "elsewhere.tif"


def test_a_model_of_the_other_processing_level_runs_but_says_so(tmp_path):
    """One model given for a season of L1C and L2A products runs on the other level too, but says so.

    Otherwise the products of the other level would get it without a word."""
    model_file("ukis-6b-l2a")
    model_file("ukis-6b-l1c")
    other = pipeline.plan(improve_request(tmp_path, probability={"cloud_models": ("ukis-6b-l2a",)}))
    assert other.probability.level == "L1C"
    (said,) = [n for n in other.notes if "ukis-6b-l2a" in n]
    assert "made for L2A products and this raster is L1C" in said and "leave the model empty" in said
    own = pipeline.plan(improve_request(tmp_path, probability={"cloud_models": ("ukis-6b-l1c",)}))
    assert not [n for n in own.notes if "made for" in n]


def test_unset_thresholds_are_the_cards_and_given_ones_win(tmp_path):
    model_file("ukis-6b-l1c")
    plan = pipeline.plan(improve_request(tmp_path, probability={"cloud_models": ["ukis-6b-l1c"]}))
    card = plan.probability.cards["ukis-6b-l1c"]
    assert (plan.merge.settings.cloud_threshold, plan.merge.settings.shadow_threshold) == (
        card.cloud_threshold,
        card.shadow_threshold,
    )
    plan = pipeline.plan(
        improve_request(
            tmp_path, probability={"cloud_models": ["ukis-6b-l1c"]}, cloud_threshold=0.71, shadow_threshold=0.13
        )
    )
    assert (plan.merge.settings.cloud_threshold, plan.merge.settings.shadow_threshold) == (0.71, 0.13)


def test_a_product_made_mask_is_read_as_scl_by_core_callers_too(tmp_path):
    """The SCL decision lives in the plan, so a script calling core gets it as well."""
    model_file("ukis-6b-l1c")
    scl = write_raster(
        tmp_path / "scl.tif",
        np.full((50, 50), 4, np.uint8),
        transform=(289000.0, 200.0, 0.0, 4986000.0, 0.0, -200.0),
        metadata={product.MASK_KIND_KEY: "scl"},
    )
    plan = pipeline.plan(improve_request(tmp_path, product_mask=scl))
    assert plan.merge.settings.product_kind == "scl"
    plain = write_raster(
        tmp_path / "plain.tif", np.zeros((50, 50), np.uint8), transform=(289000.0, 200.0, 0.0, 4986000.0, 0.0, -200.0)
    )
    assert pipeline.plan(improve_request(tmp_path, product_mask=plain)).merge.settings.product_kind == "nonzero"


def test_a_product_mask_elsewhere_is_refused_before_any_work(tmp_path, monkeypatch):
    model_file("ukis-6b-l1c")
    far = write_raster(
        tmp_path / "far.tif", np.zeros((10, 10), np.uint8), transform=(100000.0, 10.0, 0.0, 1000000.0, 0.0, -10.0)
    )

    def no_inference(*args, **kwargs):
        raise AssertionError("the models ran before the product mask was checked")

    monkeypatch.setattr(pipeline, "compute_probabilities", no_inference)
    with pytest.raises(RasterError, match="does not overlap"):
        pipeline.improve(improve_request(tmp_path, product_mask=far))


def test_every_error_a_user_can_fix_is_a_cloudmask_error(tmp_path):
    with pytest.raises(CloudMaskError, match="threshold 1.5 is outside"):
        pipeline.plan(improve_request(tmp_path, cloud_threshold=1.5))
    with pytest.raises(CloudMaskError, match="dilation"):
        pipeline.plan(dataclasses.replace(improve_request(tmp_path), settings=merge.MergeSettings(dilation=-1)))
    with pytest.raises(CloudMaskError, match="Unknown model"):
        pipeline.plan(improve_request(tmp_path, probability={"cloud_models": ["no-such-model"]}))


def test_the_default_shadow_model_is_the_cloud_model_when_it_gives_shadow(tmp_path):
    """One network for both, though a better ranked shadow model is installed."""
    model_file("ukis-4b-l1c")
    plan = pipeline.plan(improve_request(tmp_path, probability={"cloud_models": ["ukis-4b-l1c"]}))
    assert plan.probability.shadow_model == "ukis-4b-l1c"
    assert [m.card.id for m in plan.probability.models] == ["ukis-4b-l1c"]
    plan = pipeline.plan(improve_request(tmp_path, probability={"cloud_models": ["s2cloudless-l1c"]}))
    assert plan.probability.shadow_model == "ukis-6b-l1c"  # s2cloudless has no shadow: the best that has


@pytest.mark.parametrize("descriptions", [None, "names"])
def test_a_raster_with_b10_and_no_level_in_its_metadata_is_l1c(tmp_path, descriptions):
    """A stack of all 13 bands made without our tools (no PROCESSING_LEVEL) is L1C.

    L2A products have no B10. It gets the L1C model, as the same stack with the metadata does."""
    model_file("ukis-6b-l1c")
    require(L1C_STACK)
    stack = gdal.Open(str(L1C_STACK))
    names = [stack.GetRasterBand(i + 1).GetDescription() for i in range(stack.RasterCount)]
    raster = write_raster(
        tmp_path / "s2.tif", stack.ReadAsArray(0, 0, 64, 64), descriptions=names if descriptions else None
    )
    probability = pipeline.ProbabilityRequest(raster)
    plan = pipeline.plan(
        pipeline.ImproveRequest(probability, None, merge.MergeSettings(), mask=str(tmp_path / "mask.tif"))
    )
    assert plan.probability.level == "L1C"
    assert plan.probability.cloud_models == ("ukis-6b-l1c",)
