"""A season built from the real sample scene: the same ground, real clouds moved about, a cloud-like patch.

The patch is a bright one that a cloud model calls cloud on every date.

The ground is a clear 192 x 192 px window of test/data/sample/s2_12band.tif (its product
mask is clear there). Each date pastes the cloudy pixels (by the product mask) of another
window of the scene (turned or flipped) onto that ground: real clouds and their edges, at a
new place each date; that window's product mask is the date's product mask. A 32 x 32 px patch of the
ground is replaced on every date by the same piece of thick cloud from the top of the
scene: ground that looks like cloud (sand, a greenhouse, a salt pan), which the product
mask misses and the model flags on every date. So the persistent pixels are known: the patch (with the
mask's dilation around it), and no moving cloud. Stacks are named like prepared ones
(``T33TUK_<date>_L2A.tif``) and record their product mask, as Prepare Sentinel-2 product does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal
from samples import PRODUCT_MASK, SEED_STACK, require

from cloud_mask_improver.core.sentinel2 import product

SIZE = 192
GROUND = (448, 224)  # row, col of a window the product mask and the model call clear
PATCH = (60, 60, 32)  # row, col, size inside the ground window
BRIGHT = (10, 200)  # row, col of the thick cloud copied into the patch on every date
# Windows of the scene whose clouds (20-27 % of the window) are pasted, one per date.
CLOUD_WINDOWS = (
    (128, 64),
    (128, 128),
    (160, 0),
    (160, 192),
    (192, 256),
    (224, 32),
    (256, 64),
    (288, 64),
    (320, 96),
    (608, 96),
    (640, 160),
    (640, 192),
)
TILE = "T33TUK"


@dataclass
class Season:
    stacks: list[Path]
    patch: np.ndarray  # bool [SIZE, SIZE]: the bright patch
    clouds: list[np.ndarray]  # bool [SIZE, SIZE] per date: the pasted (moving) clouds


def build_season(folder: Path, dates: int = len(CLOUD_WINDOWS), windows=CLOUD_WINDOWS) -> Season:
    require(SEED_STACK, PRODUCT_MASK)
    folder.mkdir(parents=True, exist_ok=True)
    ds = gdal.Open(str(SEED_STACK))
    scene = ds.ReadAsArray()
    mask = gdal.Open(str(PRODUCT_MASK)).ReadAsArray()
    r0, c0 = GROUND
    ground = scene[:, r0 : r0 + SIZE, c0 : c0 + SIZE]
    gt = ds.GetGeoTransform()
    origin = (gt[0] + c0 * gt[1], gt[1], 0.0, gt[3] + r0 * gt[5], 0.0, gt[5])
    patch = np.zeros((SIZE, SIZE), dtype=bool)
    pr, pc, ps = PATCH
    patch[pr : pr + ps, pc : pc + ps] = True
    br, bc = BRIGHT
    bright = scene[:, br : br + ps, bc : bc + ps]
    names = [ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount)]
    stacks, clouds = [], []
    for k, (r, c) in enumerate(windows[:dates]):
        cloud = _turn(mask[r : r + SIZE, c : c + SIZE] != 0, k)
        pixels = np.where(cloud, _turn(scene[:, r : r + SIZE, c : c + SIZE], k), ground)
        pixels[:, pr : pr + ps, pc : pc + ps] = np.where(
            cloud[pr : pr + ps, pc : pc + ps], pixels[:, pr : pr + ps, pc : pc + ps], bright
        )
        stamp = f"2023{4 + k // 3:02d}{1 + 10 * (k % 3):02d}T100559"
        stack = folder / f"{TILE}_{stamp}_L2A.tif"
        product_mask = folder / f"{TILE}_{stamp}_product_mask.tif"
        _write(product_mask, cloud[None].astype(np.uint8), origin, ds.GetProjection(), ["product mask"])
        _write(
            stack,
            pixels,
            origin,
            ds.GetProjection(),
            names,
            {product.PRODUCT_MASK_KEY: str(product_mask), "PROCESSING_LEVEL": "Level-2A"},
        )
        stacks.append(stack)
        clouds.append(cloud)
    return Season(stacks, patch, clouds)


def _turn(pixels: np.ndarray, date: int) -> np.ndarray:
    """Turn and flip the cloud window a different way each date.

    The scene's clouds lie in bands, and windows cut from it alone would put cloud at the same
    place on most dates."""
    turn = date * 3 % 8
    out = np.rot90(pixels, turn % 4, axes=(-2, -1))
    return np.ascontiguousarray(out[..., ::-1] if turn >= 4 else out)


def _write(path: Path, data: np.ndarray, origin, projection: str, names, metadata=None) -> None:
    kind = gdal.GDT_UInt16 if data.dtype == np.uint16 else gdal.GDT_Byte
    out = gdal.GetDriverByName("GTiff").Create(str(path), SIZE, SIZE, data.shape[0], kind, options=["COMPRESS=DEFLATE"])
    out.SetGeoTransform(origin)
    out.SetProjection(projection)
    for index, name in enumerate(names):
        band = out.GetRasterBand(index + 1)
        band.SetDescription(name)
        band.WriteArray(data[index])
    if metadata:
        out.SetMetadata(metadata)
    out = None
