"""Tile grids: coverage, weights, mirror padding, and independence from streaming."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cloud_mask_improver.core.tiling import chip_starts, plan_axis, reflect, tukey

SCHEMES = [
    ("mirror-tukey", 256, 0.2),
    ("mirror-tukey", 64, 0.25),
    ("centre-crop", 512, 0.25),
    ("centre-crop", 64, 0.25),
    ("pixel", 128, 0.0),
]


def weight_sum(plan) -> np.ndarray:
    total = np.zeros(plan.size)
    for start, w in zip(plan.starts, plan.weights):
        lo, hi = max(start, 0), min(start + plan.tile, plan.size)
        total[lo:hi] += w[lo - start : hi - start]
    return total


def test_reflect_is_numpy_symmetric_padding_at_any_distance():
    for size in (1, 2, 5, 17):
        data = np.arange(size)
        padded = np.pad(data, (40, 45), mode="symmetric")
        assert (data[reflect(np.arange(-40, size + 45), size)] == padded).all()


def test_ukis_grid_is_anchored_like_its_authors():
    plan = plan_axis(856, "mirror-tukey", 256, 0.2)
    assert plan.starts == (-51, 153, 357, 561, 765)


def test_centre_crop_grid_spreads_chips_evenly_and_owns_centres():
    plan = plan_axis(1300, "centre-crop", 512, 0.25)
    # FarmVibes.AI: ceil(788 / 384) + 1 = 4 chips at round(linspace(0, 788, 4)).
    assert plan.starts == (0, 263, 525, 788)
    assert (weight_sum(plan) == 1).all()
    # Each chip keeps its pixels up to the middle of each overlap (FarmVibes.AI's crop).
    owned = [
        (s + int(np.argmax(w > 0)), s + len(w) - int(np.argmax(w[::-1] > 0))) for s, w in zip(plan.starts, plan.weights)
    ]
    assert owned == [(0, (512 + 263) // 2), (387, (263 + 512 + 525) // 2), (650, (525 + 512 + 788) // 2), (912, 1300)]


@pytest.mark.parametrize("size", [500, 10000])
@pytest.mark.parametrize("chip_ratio", [1, 2, 10, 100])
@pytest.mark.parametrize("step_ratio", [0.3, 0.5, 1.0])
def test_chips_meet_farmvibes_interval_expectations(size, chip_ratio, step_ratio):
    """Every case of FarmVibes.AI's test_raster_chipping.py, on our chip starts and seams.

    Its read and write interval checks."""
    tile = size // chip_ratio
    step = int(step_ratio * tile)
    starts, seams = chip_starts(size, tile, step)
    read_start = np.array(starts)
    read_end = read_start + tile
    assert (read_start[1:] <= read_end[:-1]).all()  # no gap between reads
    assert (np.diff(read_start) <= step).all()  # the step never grows
    assert read_start[0] == 0 and read_end[-1] == size  # the whole axis, last chip at the edge
    write_start, write_end = np.array(seams[:-1]), np.array(seams[1:])
    assert (write_end > write_start).all()
    assert (write_start >= read_start).all() and (write_end <= read_end).all()
    assert write_start[0] == 0 and write_end[-1] == size


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 2000), scheme=st.sampled_from(SCHEMES))
def test_every_pixel_is_covered_and_weights_are_positive(size, scheme):
    plan = plan_axis(size, *scheme)
    total = weight_sum(plan)
    assert (total > 0).all()
    if scheme[0] != "mirror-tukey":
        assert (total == 1).all()


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 1500), scheme=st.sampled_from(SCHEMES))
def test_released_rows_are_never_touched_again(size, scheme):
    """What makes streaming exact: after tile i, rows before final_row(i) get no more weight."""
    plan = plan_axis(size, *scheme)
    for i in range(len(plan)):
        done = plan.final_row(i)
        for j in range(i + 1, len(plan)):
            start = plan.starts[j]
            touched = np.flatnonzero(plan.weights[j] > 0) + start
            touched = touched[(touched >= 0) & (touched < size)]
            assert touched.size == 0 or touched.min() >= done


@given(st.integers(5, 600), st.floats(0.0, 0.4999))
@settings(max_examples=300, deadline=None)
def test_tukey_window_is_scipys_to_the_last_bit(tile, overlap):
    """The blend weights are computed without SciPy (its import costs every run 0.2-0.4 s).

    SciPy's window stays the reference, over every tile and overlap a card may give, to the
    bit: the probabilities must not change."""
    from scipy.signal import windows

    assume(overlap == 0 or tile * overlap >= 2)  # what a card may give (cards.validate)
    assert np.array_equal(tukey(tile, 2 * overlap), windows.tukey(tile, 2 * overlap))
    assert np.array_equal(plan_axis(1000, "mirror-tukey", tile, overlap).weights[0], windows.tukey(tile, 2 * overlap))
