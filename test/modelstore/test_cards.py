"""Every committed card is valid, and every installed model matches its card."""

import json

import numpy as np
import pytest

from cloud_mask_improver.core import inference
from cloud_mask_improver.core.modelstore import cards, catalogue
from cloud_mask_improver.core.runtime import home

INSTALLED_BY_SETUP = ["ukis-6b-l2a", "ukis-4b-l2a", "ukis-6b-l1c", "ukis-4b-l1c", "s2cloudless-l1c"]


def test_committed_cards_parse_and_name_their_licence():
    found = {c.id: c for c in cards.committed_cards()}
    assert set(INSTALLED_BY_SETUP) <= set(found)
    assert {f"farmvibes-cloud-{i}" for i in range(1, 6)} | {"farmvibes-shadow"} <= set(found)
    for card in found.values():
        assert card.licence and card.credit and card.title
        if card.id in INSTALLED_BY_SETUP:
            assert card.source is not None and len(card.sha256) == 64


@pytest.mark.parametrize("model_id", INSTALLED_BY_SETUP)
def test_installed_model_matches_its_card(model_id):
    card, path = catalogue.resolve(model_id)  # verifies the sha256
    assert path == home.models_dir() / card.file
    model = inference.load_model(card, path, "cpu")
    session = model.session
    shape = session.get_inputs()[0].shape
    assert session.get_inputs()[0].name == card.input_name
    assert shape[1] == len(card.bands)
    # One batch of the card's shape runs and gives probabilities in 0..1.
    if card.is_pixel_model:
        batch = np.full((5, len(card.bands)), 0.2, dtype=np.float32)
    else:
        assert shape[2:] == [card.tile, card.tile]
        batch = np.zeros((1, len(card.bands), card.tile, card.tile), dtype=np.float32)
    cloud, shadow = inference.run(model, batch)
    assert cloud is not None and 0 <= cloud.min() <= cloud.max() <= 1
    assert (shadow is not None) == card.has_shadow


def test_a_damaged_model_file_is_refused(tmp_path):
    card = next(c for c in cards.committed_cards() if c.id == "ukis-4b-l1c")
    damaged = tmp_path / "ukis-4b-l1c.onnx"
    damaged.write_bytes(b"not the model")
    (tmp_path / "ukis-4b-l1c.json").write_text(json.dumps(cards.card_to_json(card)))
    with pytest.raises(cards.CardError, match="sha256"):
        catalogue.resolve(str(damaged))


@pytest.mark.parametrize(
    "change, words",
    [
        ({"bands": ["B02", "B99"]}, "bands"),
        ({"level": "L3"}, "level"),
        ({"tiling": {"scheme": "diagonal"}}, "tiling scheme"),
        ({"output": {"activation": "relu", "cloud": [1]}}, "activation"),
        ({"thresholds": {"cloud": 3}}, "threshold"),
        ({"decision": "vote"}, "decision 'vote'"),
        # FarmVibes.AI's cloud model has two classes: no most likely of clear, cloud and shadow.
        ({"decision": "most-likely-class"}, "most likely class"),
    ],
)
def test_malformed_cards_are_refused_with_the_field_named(tmp_path, change, words):
    data = cards.card_to_json(cards.committed_cards()[0])
    data.update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(cards.CardError, match=words):
        cards.load_card(path)


def test_card_that_is_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{ not json")
    with pytest.raises(cards.CardError, match="Cannot read model card"):
        cards.load_card(path)


def test_the_old_name_of_the_centre_crop_scheme_is_still_read(tmp_path):
    """Cards written before the scheme was renamed keep working, and tile the same way."""
    for name in ("seed-centre", "centre-crop"):
        path = tmp_path / f"{name}.json"
        path.write_text(
            json.dumps(
                {
                    "id": name,
                    "title": "t",
                    "licence": "MIT",
                    "level": "L2A",
                    "bands": ["B02"],
                    "tiling": {"scheme": name, "tile": 512, "overlap": 0.25},
                    "output": {"activation": "softmax", "cloud": [1]},
                }
            )
        )
        assert cards.load_card(path).scheme == "centre-crop"


@pytest.mark.parametrize(
    "tile, overlap, refused", [(8, 0.1, True), (10, 0.15, True), (10, 0.2, False), (64, 0.0, False)]
)
def test_a_tukey_overlap_under_two_pixels_is_refused(tmp_path, tile, overlap, refused):
    """The Tukey window is 0 at both ends of a tile, so a card needs at least 2 px of overlap.

    Under 2 px of overlap, the pixels where tiles meet would get no weight from any tile (no
    probability at all)."""
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "id": "c",
                "title": "t",
                "licence": "MIT",
                "level": "L2A",
                "bands": ["B02"],
                "tiling": {"scheme": "mirror-tukey", "tile": tile, "overlap": overlap},
                "output": {"activation": "softmax", "cloud": [1]},
            }
        )
    )
    if refused:
        with pytest.raises(cards.CardError, match="under 2 px"):
            cards.load_card(path)
    else:
        assert cards.load_card(path).overlap == overlap


def test_the_level_may_be_written_in_lower_case_and_scaling_defaults_to_reflectance(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "id": "c",
                "title": "t",
                "licence": "MIT",
                "level": "l1c",
                "bands": ["B02"],
                "tiling": {"scheme": "pixel", "tile": 64},
                "output": {"activation": "probabilities", "cloud": [0]},
            }
        )
    )
    card = cards.load_card(path)
    assert card.level == "L1C"
    assert card.scale == 1e-4 and not card.apply_offset  # no scaling given: reflectance (DN x 1e-4)


def test_a_zero_std_is_refused(tmp_path):
    """Scaling divides by the std: a zero would make every input infinite."""
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "id": "c",
                "title": "t",
                "licence": "MIT",
                "level": "L2A",
                "bands": ["B02", "B03"],
                "scaling": {"factor": 0.0001, "mean": [0.1, 0.2], "std": [0.5, 0.0]},
                "tiling": {"scheme": "pixel", "tile": 64},
                "output": {"activation": "probabilities", "cloud": [0]},
            }
        )
    )
    with pytest.raises(cards.CardError, match="std"):
        cards.load_card(path)
