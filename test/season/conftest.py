"""The sample season (test/season_scene.py) masked once for every test that reads it."""

import pytest
from season_scene import build_season

from cloud_mask_improver.core.season import batch


@pytest.fixture(scope="session")
def sample_season(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample_season")
    season = build_season(folder / "stacks")
    out = folder / "masks"
    batch.prepare_output_folder(str(out))
    items = batch.plan_items([str(p) for p in season.stacks])
    rows = batch.run_sequential(items, batch.BatchOptions(cloud_models=("ukis-6b-l2a",)), str(out))
    assert all(r.ok for r in rows), [r.error for r in rows if not r.ok]
    return season, rows, out
