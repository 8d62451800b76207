"""Merging probabilities with the product mask: the behaviour a user sees in the mask."""

import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from cloud_mask_improver.core.merge import (
    CATEGORY_COLOURS,
    CATEGORY_NAMES,
    CLEAR,
    CLOUD,
    NODATA,
    OUTPUT_MODES,
    PRODUCT_KINDS,
    SHADOW,
    Fractions,
    MergeSettings,
    ProductMask,
    categories,
    decode_product_mask,
    dilate_disk,
    merge_block,
)

SEED = MergeSettings(output_mode="binary")  # the seed's defaults: 0.3, 0.2, nonzero, disk 5


def disk(radius: int) -> np.ndarray:
    """The disk footprint, written out independently of core.merge."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return y * y + x * x <= radius * radius


def seed_rule(cloud_p, shadow_p, product_values, radius=5):
    """merge_cloud_masks_simple as the seed states it (no nodata handling)."""
    mask = (cloud_p > 0.3) | (shadow_p > 0.2) | (product_values != 0)
    return ndimage.binary_dilation(mask, structure=disk(radius)).astype(np.uint8) if radius else mask.astype(np.uint8)


def reference(cloud_p, shadow_p, valid, product, s: MergeSettings) -> np.ndarray:
    """Whole-raster oracle built from scipy primitives, to check the fast paths.

    Dilate, then FarmVibes.AI's min_area on the merged mask (nodata separates components)."""

    def grow(mask):
        return ndimage.binary_dilation(mask, structure=disk(s.dilation)) if s.dilation else mask

    def small(mask):
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
        return (np.bincount(labels.ravel()) < s.min_area)[labels] & (labels > 0)

    with np.errstate(invalid="ignore"):
        cloud = grow(((cloud_p > s.cloud_threshold) | product.cloud) & valid) & valid
        shadow = grow(((shadow_p > s.shadow_threshold) | product.shadow) & valid) & valid
    if s.output_mode == "binary":
        cloud, shadow = cloud | shadow, np.zeros_like(cloud)
    if s.min_area > 1:
        gone = small(cloud | shadow)
        cloud, shadow = cloud & ~gone, shadow & ~gone & ~cloud
        labels, count = ndimage.label(valid & ~cloud & ~shadow, structure=np.ones((3, 3)))
        for hole in range(1, count + 1):
            pixels = labels == hole
            if pixels.sum() < s.min_area:
                ring = ndimage.binary_dilation(pixels, structure=np.ones((3, 3)))
                if (ring & shadow).any() and not (ring & cloud).any():
                    shadow |= pixels
                else:
                    cloud |= pixels
    out = np.select([cloud, shadow], [CLOUD, SHADOW], CLEAR).astype(np.uint8)
    out[~valid] = NODATA
    return out


def blank(shape=(30, 30)):
    return np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.uint8)


# --- the seed rule --------------------------------------------------------------------------


def test_binary_mode_reproduces_seed_rule_with_strict_thresholds():
    cloud_p, shadow_p, product = blank((40, 40))
    cloud_p[8, 8] = 0.31  # above 0.3: cloud
    cloud_p[8, 30] = 0.3  # exactly 0.3: not cloud (strict >)
    shadow_p[30, 8] = 0.21  # above 0.2: shadow
    shadow_p[30, 30] = 0.2  # exactly 0.2: nothing
    product[20, 20] = 2  # cirrus in the product mask
    product[0, 39] = 3  # "other", at a corner: the disk is clipped
    valid = np.ones((40, 40), bool)
    got = merge_block(cloud_p, shadow_p, valid, decode_product_mask(product, "nonzero", 100), SEED)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, seed_rule(cloud_p, shadow_p, product))
    assert got[8, 30] == 0 and got[30, 30] == 0
    assert got.sum() == 3 * 81 + 26  # three whole disks and a corner's quarter-disk (axes included)


def test_seed_rule_on_random_arrays_without_nodata():
    rng = np.random.default_rng(7)
    cloud_p = (rng.random((60, 70)) * 0.33).astype(np.float32)
    shadow_p = (rng.random((60, 70)) * 0.22).astype(np.float32)
    product = (rng.random((60, 70)) < 0.003).astype(np.uint8) * 3
    got = merge_block(cloud_p, shadow_p, np.ones((60, 70), bool), decode_product_mask(product, "nonzero", 100), SEED)
    np.testing.assert_array_equal(got, seed_rule(cloud_p, shadow_p, product))


def test_nodata_stays_nodata_and_never_grows_cloud():
    cloud_p, shadow_p, product = blank()
    valid = np.ones((30, 30), bool)
    valid[10:13, 10:13] = False
    cloud_p[10:13, 10:13] = 1.0  # the seed writes probability 1 under nodata
    product[10:13, 10:13] = 100  # and the product mask's nodata is 100
    got = merge_block(cloud_p, shadow_p, valid, decode_product_mask(product, "nonzero", 100), SEED)
    assert (got[10:13, 10:13] == NODATA).all()
    assert (got[valid] == 0).all()  # the seed would have dilated a 13x13 blob of cloud here


def test_product_nodata_is_not_cloud_on_valid_pixels():
    cloud_p, shadow_p, product = blank()
    product[:, :5] = 100
    got = merge_block(cloud_p, shadow_p, np.ones((30, 30), bool), decode_product_mask(product, "nonzero", 100), SEED)
    assert (got == 0).all()


def test_cloud_near_nodata_still_dilates_over_valid_pixels_only():
    cloud_p, _, _ = blank()
    cloud_p[15, 15] = 0.9
    valid = np.ones((30, 30), bool)
    valid[15, 17] = False
    got = merge_block(cloud_p, None, valid, None, MergeSettings())
    assert got[15, 17] == NODATA
    assert got[15, 20] == CLOUD and got[15, 21] == CLEAR


def test_nan_probability_is_no_probability():
    cloud_p, shadow_p, _ = blank((12, 12))
    cloud_p[:] = np.nan
    shadow_p[:] = np.nan
    got = merge_block(cloud_p, shadow_p, np.ones((12, 12), bool), None, MergeSettings())
    assert (got == CLEAR).all()


def test_models_are_optional():
    valid = np.ones((9, 9), bool)
    product = decode_product_mask(np.eye(9, dtype=np.uint8), "nonzero")
    got = merge_block(None, None, valid, product, MergeSettings(dilation=0))
    np.testing.assert_array_equal(got, np.eye(9, dtype=np.uint8))
    assert (merge_block(None, None, valid, None, MergeSettings()) == CLEAR).all()


# --- product mask kinds ---------------------------------------------------------------------


def test_decode_nonzero_with_nodata_100():
    m = decode_product_mask(np.array([0, 1, 2, 3, 100], np.uint8), "nonzero", nodata=100)
    assert m.cloud.tolist() == [False, True, True, True, False]
    assert m.known.tolist() == [True, True, True, True, False]
    assert not m.shadow.any()


def test_decode_scl_classes():
    values = np.arange(12, dtype=np.uint8)
    m = decode_product_mask(values, "scl")
    assert np.flatnonzero(m.cloud).tolist() == [8, 9, 10]
    assert np.flatnonzero(m.shadow).tolist() == [3]
    assert np.flatnonzero(~m.known).tolist() == [0, 1]
    m = decode_product_mask(values, "scl", nodata=11)
    assert np.flatnonzero(~m.known).tolist() == [0, 1, 11]


def test_decode_qa60_bits():
    values = np.array([0, 1 << 10, 1 << 11, (1 << 10) | (1 << 11), 1 << 9, 65535], np.uint16)
    m = decode_product_mask(values, "qa60")
    assert m.cloud.tolist() == [False, True, True, True, False, True]
    assert m.known.all() and not m.shadow.any()
    m = decode_product_mask(values, "qa60", nodata=65535)
    assert m.known.tolist() == [True] * 5 + [False]
    assert not m.cloud[-1]
    floats = decode_product_mask(np.array([1024.0, np.nan, 512.0]), "qa60")
    assert floats.cloud.tolist() == [True, False, False]
    assert floats.known.tolist() == [True, False, True]


def test_decode_probability_threshold_is_inclusive():
    values = np.array([0, 49, 50, 51, 100, 255], np.uint8)
    m = decode_product_mask(values, "probability", nodata=255, probability_threshold=50)
    assert m.cloud.tolist() == [False, False, True, True, True, False]
    assert m.known.tolist() == [True] * 5 + [False]
    m = decode_product_mask(values, "probability", probability_threshold=80)
    assert m.cloud.tolist() == [False, False, False, False, True, True]


@pytest.mark.parametrize("kind", PRODUCT_KINDS)
def test_nan_is_unknown_for_every_kind(kind):
    m = decode_product_mask(np.array([np.nan, 9.0], np.float32), kind)
    assert m.known.tolist() == [False, True]
    assert not m.cloud[0] and not m.shadow[0]


def test_decode_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="scl"):
        decode_product_mask(np.zeros(3), "fmask")


def test_scl_shadow_comes_out_as_shadow():
    scl = np.full((20, 20), 4, np.uint8)  # vegetation
    scl[5, 5] = 3
    scl[15, 15] = 9
    got = merge_block(
        None,
        None,
        np.ones((20, 20), bool),
        decode_product_mask(scl, "scl"),
        MergeSettings(product_kind="scl", dilation=1),
    )
    assert got[5, 5] == SHADOW and got[4, 5] == SHADOW and got[4, 4] == CLEAR
    assert got[15, 15] == CLOUD and got[15, 16] == CLOUD


# --- dilation and patches -------------------------------------------------------------------


@pytest.mark.parametrize("radius", range(9))
def test_dilation_footprint_is_exactly_a_disk(radius):
    cloud_p = np.zeros((25, 25), np.float32)
    cloud_p[12, 12] = 1.0
    got = merge_block(cloud_p, None, np.ones((25, 25), bool), None, MergeSettings(dilation=radius))
    expected = sum(
        1
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if dy * dy + dx * dx <= radius * radius
    )
    assert int((got == CLOUD).sum()) == expected
    offsets = {(int(y) - 12, int(x) - 12) for y, x in zip(*np.nonzero(got == CLOUD))}
    assert all(dy * dy + dx * dx <= radius * radius for dy, dx in offsets)
    if radius == 5:
        assert expected == 81


@given(st.integers(0, 2**32 - 1), st.integers(0, 9))
@settings(max_examples=60, deadline=None)
def test_dilate_disk_matches_scipy(seed, radius):
    mask = np.random.default_rng(seed).random((23, 31)) < 0.05
    np.testing.assert_array_equal(
        dilate_disk(mask, radius), ndimage.binary_dilation(mask, structure=disk(radius)) if radius else mask
    )


def test_min_area_drops_small_patches_and_keeps_big_ones():
    cloud_p = np.zeros((20, 20), np.float32)
    cloud_p[2, 2] = cloud_p[3, 3] = cloud_p[4, 4] = 1.0  # 3 px, diagonal: one patch in 8-connectivity
    cloud_p[10:12, 10:12] = 1.0  # 4 px square
    cloud_p[17, 2] = 1.0  # lone pixel
    valid = np.ones((20, 20), bool)

    def cloudy(min_area):
        return set(
            zip(
                *np.nonzero(
                    merge_block(cloud_p, None, valid, None, MergeSettings(dilation=0, min_area=min_area)) == CLOUD
                )
            )
        )

    assert len(cloudy(0)) == len(cloudy(1)) == 8
    assert len(cloudy(2)) == 7  # the lone pixel goes
    assert len(cloudy(3)) == 7  # the diagonal line counts as one 3 px patch
    assert cloudy(4) == {(10, 10), (10, 11), (11, 10), (11, 11)}
    assert cloudy(5) == set()


def test_min_area_counts_the_dilated_patch():
    """FarmVibes.AI dilates first: a 2x2 blob grown by a disk of 5 px has 104 px.

    So MIN_AREA 30 keeps it (measured before the dilation it would go)."""
    cloud_p = np.zeros((30, 30), np.float32)
    cloud_p[14:16, 14:16] = 1.0
    got = merge_block(cloud_p, None, np.ones((30, 30), bool), None, MergeSettings(dilation=5, min_area=30))
    assert (got == CLOUD).sum() == 104
    assert (
        merge_block(cloud_p, None, np.ones((30, 30), bool), None, MergeSettings(dilation=5, min_area=105)) == CLEAR
    ).all()


def test_min_area_counts_cloud_and_shadow_together_and_clears_both():
    cloud_p, shadow_p, _ = blank((12, 12))
    cloud_p[2:4, 2:4] = 1.0  # 4 px of cloud
    shadow_p[2:4, 4:6] = 1.0  # 4 px of shadow touching it: one 8 px component
    valid = np.ones((12, 12), bool)
    kept = merge_block(cloud_p, shadow_p, valid, None, MergeSettings(dilation=0, min_area=8))
    assert (kept == CLOUD).sum() == 4 and (kept == SHADOW).sum() == 4
    gone = merge_block(cloud_p, shadow_p, valid, None, MergeSettings(dilation=0, min_area=9))
    assert (gone == CLEAR).all()


def test_min_area_fills_small_holes_with_the_class_around_them():
    cloud_p, shadow_p, _ = blank((20, 30))
    cloud_p[2:9, 2:9] = 1.0
    cloud_p[5, 5] = 0.0  # a 1 px hole in cloud
    shadow_p[2:9, 15:22] = 1.0
    shadow_p[5, 18] = 0.0  # a 1 px hole in shadow
    shadow_p[13:18, 2:9] = 1.0  # a 3 px clear gap between shadow ...
    cloud_p[13:18, 10:17] = 1.0  # ... and cloud,
    cloud_p[13, 9] = cloud_p[17, 9] = 1.0  # closed above and below
    valid = np.ones((20, 30), bool)
    got = merge_block(cloud_p, shadow_p, valid, None, MergeSettings(dilation=0, min_area=5))
    assert got[5, 5] == CLOUD and got[5, 18] == SHADOW
    assert (got[14:17, 9] == CLOUD).all()  # touches cloud: cloud
    assert got[0, 0] == CLEAR  # the big clear area stays
    binary = merge_block(cloud_p, shadow_p, valid, None, MergeSettings(dilation=0, min_area=5, output_mode="binary"))
    np.testing.assert_array_equal(binary, (got != CLEAR).astype(np.uint8))


def test_nodata_is_never_filled_and_separates_components():
    cloud_p = np.zeros((10, 10), np.float32)
    valid = np.ones((10, 10), bool)
    valid[:, 5] = False  # a nodata column: clear areas of 50 px (left) and 40 px (right)
    for min_area, left, right in ((40, CLEAR, CLEAR), (41, CLEAR, CLOUD), (51, CLOUD, CLOUD)):
        got = merge_block(cloud_p, None, valid, None, MergeSettings(dilation=0, min_area=min_area))
        assert (got[:, 5] == NODATA).all()
        # A clear area smaller than MIN_AREA is filled, as FarmVibes.AI would.
        assert (got[:, :5] == left).all() and (got[:, 6:] == right).all()


def test_cloud_wins_over_shadow():
    cloud_p, shadow_p, _ = blank((30, 30))
    cloud_p[10, 10] = 0.9
    shadow_p[10, 10] = 0.9  # same pixel
    shadow_p[10, 13] = 0.9  # inside the cloud's dilation
    shadow_p[10, 25] = 0.9  # far away
    got = merge_block(cloud_p, shadow_p, np.ones((30, 30), bool), None, MergeSettings())
    assert got[10, 10] == CLOUD and got[10, 13] == CLOUD
    assert got[10, 16] == SHADOW  # the shadow's own disk reaches beyond the cloud's
    assert got[10, 25] == SHADOW and got[10, 30 - 1] == SHADOW
    binary = merge_block(cloud_p, shadow_p, np.ones((30, 30), bool), None, MergeSettings(output_mode="binary"))
    np.testing.assert_array_equal(binary, (got != CLEAR).astype(np.uint8))


# --- windows with halos ---------------------------------------------------------------------


@st.composite
def scenes(draw):
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.floats(0.0, 0.6))
    cloud_p = rng.random((height, width)).astype(np.float32)
    cloud_p[rng.random((height, width)) < 0.05] = np.nan
    shadow_p = rng.random((height, width)).astype(np.float32)
    s = MergeSettings(
        cloud_threshold=1 - density,
        shadow_threshold=1 - density / 2,
        product_kind="scl",
        dilation=draw(st.integers(0, 6)),
        min_area=draw(st.integers(0, 20)),
        output_mode=draw(st.sampled_from(OUTPUT_MODES)),
    )
    valid = rng.random((height, width)) > draw(st.sampled_from([0.0, 0.1, 0.5]))
    scl = rng.choice(
        np.array([0, 3, 4, 5, 8, 9, 10], np.uint8), size=(height, width), p=[0.02, 0.03, 0.45, 0.44, 0.03, 0.02, 0.01]
    )
    rows = sorted(set(draw(st.lists(st.integers(1, max(height - 1, 1)), max_size=4))) - {height})
    cols = sorted(set(draw(st.lists(st.integers(1, max(width - 1, 1)), max_size=4))) - {width})
    return cloud_p, shadow_p, valid, decode_product_mask(scl, "scl"), s, [0, *rows, height], [0, *cols, width]


def crop(product: ProductMask, window) -> ProductMask:
    return ProductMask(product.cloud[window], product.shadow[window], product.known[window])


@given(scenes())
@settings(max_examples=150, deadline=None)
def test_haloed_windows_equal_whole_raster(scene):
    cloud_p, shadow_p, valid, product, s, row_cuts, col_cuts = scene
    height, width = valid.shape
    whole = merge_block(cloud_p, shadow_p, valid, product, s)
    np.testing.assert_array_equal(whole, reference(cloud_p, shadow_p, valid, product, s))
    halo = s.halo()
    tiled = np.full(valid.shape, 77, np.uint8)
    for r0, r1 in pairwise(row_cuts):
        for c0, c1 in pairwise(col_cuts):
            b0, b1 = max(r0 - halo, 0), min(r1 + halo, height)
            a0, a1 = max(c0 - halo, 0), min(c1 + halo, width)
            block = (slice(b0, b1), slice(a0, a1))
            tiled[r0:r1, c0:c1] = merge_block(
                cloud_p[block],
                shadow_p[block],
                valid[block],
                crop(product, block),
                s,
                core=(slice(r0 - b0, r1 - b0), slice(c0 - a0, c1 - a0)),
                at_edge=(b0 == 0, b1 == height, a0 == 0, a1 == width),
            )
    np.testing.assert_array_equal(tiled, whole)


def test_patch_cut_by_a_window_is_kept_not_dropped():
    cloud_p = np.zeros((10, 80), np.float32)
    cloud_p[5, 5:75] = 1.0  # one 70 px line of cloud
    valid = np.ones((10, 80), bool)
    s = MergeSettings(dilation=0, min_area=20)
    assert (merge_block(cloud_p, None, valid, None, s)[5, 5:75] == CLOUD).all()
    left = merge_block(
        cloud_p[:, :50],
        None,
        valid[:, :50],
        None,
        s,
        core=(slice(None), slice(0, 10)),
        at_edge=(True, True, True, False),
    )
    assert (left[5, 5:10] == CLOUD).all()
    # Were the cut side taken for the raster's edge, only the piece would be
    # measured, and a 15 px piece of the big patch would be dropped.
    piece = merge_block(cloud_p[:, :20], None, valid[:, :20], None, s)
    assert (piece == CLEAR).all()


def test_core_too_close_to_an_inner_side_is_refused():
    valid = np.ones((20, 20), bool)
    with pytest.raises(ValueError, match="halo of 5 px"):
        merge_block(
            None,
            None,
            valid,
            None,
            MergeSettings(),
            core=(slice(2, 10), slice(0, 20)),
            at_edge=(False, True, True, True),
        )
    got = merge_block(
        None, None, valid, None, MergeSettings(), core=(slice(5, 15), slice(0, 20)), at_edge=(False, False, True, True)
    )
    assert got.shape == (10, 20)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        merge_block(np.zeros((4, 5), np.float32), None, np.ones((5, 4), bool), None, MergeSettings())


# --- fractions, categories and settings -----------------------------------------------------


def test_fractions_are_of_valid_pixels_across_windows():
    f = Fractions()
    f.add(np.array([[CLEAR, CLOUD], [NODATA, NODATA]], np.uint8), "categorical")
    f.add(np.array([[SHADOW, CLEAR]], np.uint8), "categorical")
    assert (f.clear, f.cloud, f.shadow, f.nodata, f.valid) == (2, 1, 1, 2, 4)
    assert f.as_dict() == {"CLEAR_FRACTION": 0.5, "CLOUD_FRACTION": 0.25, "SHADOW_FRACTION": 0.25}


def test_fractions_in_binary_mode_count_everything_as_cloud():
    f = Fractions()
    f.add(np.array([0, 1, 1, 255], np.uint8), "binary")
    assert f.as_dict() == {
        "CLEAR_FRACTION": pytest.approx(1 / 3),
        "CLOUD_FRACTION": pytest.approx(2 / 3),
        "SHADOW_FRACTION": 0.0,
    }


def test_fractions_of_an_all_nodata_raster_are_zero_not_nan():
    f = Fractions()
    f.add(np.full((3, 3), NODATA, np.uint8), "categorical")
    assert f.as_dict() == {"CLEAR_FRACTION": 0.0, "CLOUD_FRACTION": 0.0, "SHADOW_FRACTION": 0.0}
    assert Fractions().as_dict()["CLOUD_FRACTION"] == 0.0


def test_fractions_refuse_values_of_another_mode():
    with pytest.raises(ValueError, match=r"\[2\]"):
        Fractions().add(np.array([0, 2], np.uint8), "binary")


def test_fractions_sum_to_one_on_a_merged_mask():
    rng = np.random.default_rng(3)
    cloud_p = rng.random((50, 50)).astype(np.float32) * 0.32
    valid = rng.random((50, 50)) > 0.2
    f = Fractions()
    f.add(merge_block(cloud_p, cloud_p, valid, None, MergeSettings(dilation=1)), "categorical")
    assert f.valid == int(valid.sum())
    assert math.isclose(sum(f.as_dict().values()), 1.0)


def test_every_category_has_a_name_and_a_distinct_colour():
    assert set(CATEGORY_NAMES) == set(CATEGORY_COLOURS) == {CLEAR, CLOUD, SHADOW, NODATA}
    assert len(set(CATEGORY_COLOURS.values())) == 4
    assert all(len(c) == 4 and all(0 <= v <= 255 for v in c) for c in CATEGORY_COLOURS.values())
    assert set(categories("binary")) == {CLEAR, CLOUD, NODATA}
    assert categories("categorical")[SHADOW][0] == "cloud shadow"


def test_public_enum_order():
    assert PRODUCT_KINDS == ("nonzero", "scl", "qa60", "probability")
    assert OUTPUT_MODES == ("categorical", "binary")
    assert MergeSettings().halo() == 5
    assert MergeSettings(dilation=3, min_area=10).halo() == 23
    assert MergeSettings(dilation=3, min_area=1).halo() == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cloud_threshold": 1.5}, r"cloud_threshold must be between 0.0 and 1.0, got 1.5"),
        ({"shadow_threshold": -0.1}, r"shadow_threshold must be between 0.0 and 1.0, got -0.1"),
        ({"cloud_threshold": float("nan")}, r"cloud_threshold must be between 0.0 and 1.0, got nan"),
        ({"product_probability_threshold": 101}, r"product_probability_threshold must be between 0.0 and 100.0"),
        ({"dilation": -1}, r"dilation must be a whole number of pixels >= 0, got -1"),
        ({"dilation": 2.5}, r"dilation must be a whole number of pixels >= 0, got 2.5"),
        ({"min_area": -3}, r"min_area must be a whole number of pixels >= 0, got -3"),
        ({"product_kind": "fmask"}, r"product_kind must be one of nonzero, scl, qa60, probability, got 'fmask'"),
        ({"output_mode": "rgb"}, r"output_mode must be one of categorical, binary, got 'rgb'"),
    ],
)
def test_validate_names_the_bad_value_and_the_allowed_range(change, message):
    bad = MergeSettings(**change)
    with pytest.raises(ValueError, match=message):
        bad.validate()
    with pytest.raises(ValueError, match=message):
        merge_block(None, None, np.ones((3, 3), bool), None, bad)


def test_defaults_are_valid_and_the_seeds():
    s = MergeSettings()
    s.validate()
    assert (s.cloud_threshold, s.shadow_threshold, s.dilation, s.product_kind) == (0.3, 0.2, 5, "nonzero")
