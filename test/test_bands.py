"""Band names, detection and mapping."""

import pytest

from cloud_mask_improver.core.bands import (
    ALL_BANDS,
    FARMVIBES_BANDS,
    BandError,
    band_indices,
    detect_bands,
    normalise,
    parse_band_list,
)


@pytest.mark.parametrize(
    "text, band",
    [
        ("B8A", "B8A"),
        ("b8a", "B8A"),
        ("B02", "B02"),
        ("B2", "B02"),
        ("blue", "B02"),
        ("NIR", "B08"),
        ("swir16", "B11"),
        ("swir22", "B12"),
        ("B04 (red)", "B04"),
        ("B13", None),
        ("Band 1", None),
        ("", None),
    ],
)
def test_names_and_aliases(text, band):
    assert normalise(text) == band


def test_detection_prefers_descriptions_then_count():
    assert detect_bands(["B04", "B03", "B02", "B08"]) == ["B04", "B03", "B02", "B08"]
    assert detect_bands([""] * 12) == list(FARMVIBES_BANDS)
    assert detect_bands(["Band 1"] * 13) == list(ALL_BANDS)
    assert detect_bands(["x"] * 4, "red,green,blue,nir") == ["B04", "B03", "B02", "B08"]


def test_unknown_count_asks_for_the_list():
    with pytest.raises(BandError, match="BANDS"):
        detect_bands([""] * 5)


@pytest.mark.parametrize("text, words", [("B02,B99", "Unknown band name 'B99'"), ("B02,blue", "listed twice")])
def test_bad_band_lists(text, words):
    with pytest.raises(BandError, match=words):
        parse_band_list(text)


def test_a_missing_band_is_named():
    assert band_indices(["B02", "B03", "B04", "B08"], ["B08", "B02"]) == [3, 0]
    with pytest.raises(BandError, match="needs band B11, B12"):
        band_indices(["B02", "B03", "B04", "B08"], ["B02", "B11", "B12"], "ukis-6b-l2a")
