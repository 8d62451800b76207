"""How a pixel is decided: the ukis models' most likely class, thresholds for the others.

One rule for the plan, the merge on its own and the dialog."""

from pathlib import Path

import numpy as np
import pytest
from rasters import read
from samples import L1C_STACK, model_file, require

from cloud_mask_improver.core import decision, pipeline
from cloud_mask_improver.core import merge as merge_rules
from cloud_mask_improver.core.modelstore import cards
from cloud_mask_improver.core.plan import ModelUse, models_resolution

CARDS = {c.id: c for c in cards.committed_cards()}


def test_most_likely_class_flags_what_thresholds_at_half_leave_clear():
    """The issue's pixel (cloud 0.45, shadow 0.25, clear 0.30) is cloud for ukis-csmask.

    Ties go to the first of clear, cloud, shadow, as its argmax does; NaN is neither."""
    cloud = np.array([[0.45, 0.4, 0.4, 0.3, 0.1, np.nan]], dtype=np.float32)
    shadow = np.array([[0.25, 0.4, 0.2, 0.4, 0.45, np.nan]], dtype=np.float32)
    valid = np.ones(cloud.shape, dtype=bool)
    c, s = merge_rules.flags(cloud, shadow, valid, None, merge_rules.MergeSettings(most_likely_class=True))
    #       c>clear  tie c=s  tie c=clear  s wins  clear wins  nodata
    assert c.tolist() == [[True, True, False, False, False, False]]
    assert s.tolist() == [[False, False, False, True, False, False]]
    settings = merge_rules.MergeSettings(cloud_threshold=0.5, shadow_threshold=0.5)
    c, s = merge_rules.flags(cloud, shadow, valid, None, settings)
    assert not c[0, 0] and not s[0, 0]


def test_one_ukis_network_decides_by_the_most_likely_class_unless_a_threshold_is_given():
    ukis = CARDS["ukis-6b-l1c"]
    own = decision.recommended([ukis], ukis)
    assert decision.decide(None, None, own) == decision.Decision(0.5, 0.5, most_likely_class=True)
    # A threshold given: thresholds for both, the other the card's.
    assert decision.decide(None, 0.3, own) == decision.Decision(0.5, 0.3, most_likely_class=False)
    assert decision.decide(0.4, None, own) == decision.Decision(0.4, 0.5, most_likely_class=False)


@pytest.mark.parametrize(
    "cloud, shadow",
    [
        (["farmvibes-cloud-2"], "farmvibes-shadow"),  # FarmVibes.AI thresholds
        (["s2cloudless-l1c"], "ukis-6b-l1c"),  # cloud from another network than shadow
        (["ukis-6b-l1c", "ukis-4b-l1c"], "ukis-6b-l1c"),  # an ensemble's mean is no softmax
        (["ukis-6b-l1c"], None),  # no shadow: no clear either
    ],
)
def test_other_models_and_mixes_decide_by_thresholds(cloud, shadow):
    models = decision.recommended([CARDS[c] for c in cloud], CARDS[shadow] if shadow else None)
    decided = decision.decide(None, None, models)
    assert not decided.most_likely_class
    assert decided.note().startswith("Thresholds:")


def test_without_recommendations_farmvibes_defaults_apply():
    assert decision.decide(None, None, decision.Recommended()) == decision.Decision(0.3, 0.2)


def _uses(*ids):
    return tuple(ModelUse(CARDS[i], Path(f"{i}.onnx"), True, False) for i in ids)


def test_the_models_own_resolution_is_the_finest_of_their_cards():
    assert models_resolution(_uses("ukis-6b-l1c")) == 30
    assert models_resolution(_uses("ukis-6b-l1c", "ukis-4b-l1c")) == 30
    assert models_resolution(_uses("ukis-6b-l1c", "farmvibes-shadow")) == 10
    assert models_resolution(_uses("s2cloudless-l1c")) == 10


@pytest.mark.parametrize("given, expected", [(None, 30.0), (0, 0.0), (20, 20.0), (10, 0.0)])
def test_the_plan_runs_ukis_at_30_m_unless_told(tmp_path, given, expected):
    model_file("ukis-6b-l1c")
    require(L1C_STACK)
    request = pipeline.ImproveRequest(
        pipeline.ProbabilityRequest(str(L1C_STACK), ["ukis-6b-l1c"], resolution=given),
        None,
        merge_rules.MergeSettings(),
        mask=str(tmp_path / "m.tif"),
    )
    assert pipeline.plan(request).probability.resolution == expected


def test_a_merge_of_the_kept_probabilities_gives_the_same_mask(tmp_path):
    """The rule travels with the probability rasters, and at 30 m they come back by nearest.

    The merge on its own, thresholds empty, redoes the run's mask."""
    model_file("ukis-6b-l1c")
    require(L1C_STACK)
    outputs = pipeline.ProbabilityOutputs(str(tmp_path / "cloud.tif"), str(tmp_path / "shadow.tif"))
    settings = merge_rules.MergeSettings(dilation=2)
    pipeline.improve(
        pipeline.ImproveRequest(
            pipeline.ProbabilityRequest(str(L1C_STACK), ["ukis-6b-l1c"]),
            None,
            settings,
            mask=str(tmp_path / "run.tif"),
            outputs=outputs,
        )
    )
    recorded = pipeline.recorded(outputs.cloud, outputs.shadow)
    decided = decision.decide(None, None, recorded)
    assert decided.most_likely_class
    merge = pipeline.MergeRequest(
        outputs.cloud,
        outputs.shadow,
        None,
        merge_rules.MergeSettings(dilation=2, most_likely_class=decided.most_likely_class),
    )
    pipeline.merge(merge, str(tmp_path / "merged.tif"))
    assert np.array_equal(read(tmp_path / "merged.tif"), read(tmp_path / "run.tif"))


@pytest.mark.parametrize(
    "cloud_model, shadow_model, most_likely",
    [
        ("ukis-6b-l1c", "ukis-6b-l1c", True),
        ("ukis-6b-l1c", "ukis-4b-l1c", False),  # two networks: their classes do not add up to one softmax
        ("ukis-6b-l1c", None, False),  # a raster without the rule (made elsewhere, or an ensemble's mean)
    ],
)
def test_the_merge_on_its_own_takes_the_rule_only_from_one_model(tmp_path, cloud_model, shadow_model, most_likely):
    from rasters import write_raster

    from cloud_mask_improver.core import probability as pr

    def raster(name, model):
        rule = {pr.DECISION_KEY: decision.MOST_LIKELY_CLASS, pr.MODEL_KEY: model} if model else {}
        return write_raster(tmp_path / name, np.zeros((4, 4), np.float32), nodata=-1.0, metadata=rule)

    recorded = pipeline.recorded(raster("c.tif", cloud_model), raster("s.tif", shadow_model))
    assert recorded.most_likely_class == most_likely
