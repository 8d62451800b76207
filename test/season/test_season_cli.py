"""``cloudmask batch`` writes the season layers and the report too, without QGIS.

On the sample season with two fields, one around the patch called cloud on every date, the
field's share of cloud on persistent pixels is large and the log says so; bad settings exit 2."""

import csv
import os
import subprocess
import sys
from pathlib import Path

from osgeo import gdal, ogr, osr

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / ".venv" / "qgis-plugins"
NO_QGIS = (
    "import sys; sys.modules['qgis'] = None; sys.path.insert(0, {plugins!r}); "
    "from cloud_mask_improver.core import cli; sys.exit(cli.main(sys.argv[1:]))"
)


def _command(*args):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-c", NO_QGIS.format(plugins=str(PLUGINS)), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _fields(path: Path, stack: Path) -> str:
    """'patch': the bright patch and 4 px around it; 'plain': a field of the same size far from it."""
    from season_scene import PATCH

    ds = gdal.Open(str(stack))
    gt = ds.GetGeoTransform()
    srs = osr.SpatialReference()
    srs.ImportFromWkt(ds.GetProjection())
    out = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = out.CreateLayer("fields", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    row, col, size = PATCH
    for name, (r, c) in (("patch", (row - 4, col - 4)), ("plain", (140, 140))):
        x0, y0 = gt[0] + c * gt[1], gt[3] + r * gt[5]
        x1, y1 = x0 + (size + 8) * gt[1], y0 + (size + 8) * gt[5]
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", name)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"))
        layer.CreateFeature(feature)
    out = None
    return str(path)


def test_the_command_line_writes_season_layers_report_and_field_shares(sample_season, tmp_path):
    season, _, _ = sample_season
    fields = _fields(tmp_path / "fields.gpkg", season.stacks[0])
    out = tmp_path / "out"
    done = _command(
        "batch",
        *map(str, season.stacks),
        "--out",
        str(out),
        "--sequential",
        "--area",
        fields,
        "--cloud-model",
        "ukis-6b-l2a",
    )
    assert done.returncode == 0, done.stderr
    for layer in ("valid", "clear", "cloud_frequency", "persistent"):
        assert (out / f"season_T33TUK_{layer}.tif").exists(), layer
    assert (out / "season_report.html").exists() and "season report" in done.stderr
    with open(out / "summary_fields.csv", newline="") as handle:
        shares = {}
        for row in csv.DictReader(handle):
            shares.setdefault(row["field"], []).append(row["persistent_cloud_share"])
    # On a date, most of the patch field's cloud is the patch; the plain field has no persistent pixel.
    patch = [float(s) for s in shares["patch"] if s]
    assert len(patch) == len(season.stacks) and min(patch) > 0.25
    assert all(s in ("", "0") for s in shares["plain"])
    assert "field patch:" in done.stderr and "field plain:" not in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_season_settings_exit_2_before_any_product(tmp_path):
    done = _command("batch", "x.tif", "--out", str(tmp_path / "o"), "--persistent-share", "2")
    assert done.returncode == 2 and "at most 1" in done.stderr and "Give e.g. 0.9" in done.stderr
    done = _command("batch", "x.tif", "--out", str(tmp_path / "o"), "--persistent-min-dates", "0")
    assert done.returncode == 2 and "at least 1" in done.stderr
    assert not (tmp_path / "o").exists()
