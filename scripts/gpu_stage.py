"""Stage what the GPU check needs for a lent GPU machine, in chunks, and unpack it there.

The lent machine (Python 3.12, torch with CUDA 13 pip libraries) cannot download
anything and takes at most 64 MiB of files per command, working tree included. It
lacks GDAL, onnxruntime-gpu and our model. So, here (``stage``):

- download onnxruntime-gpu (256 MB wheel) and gdal-wheel (29 MB, provides osgeo) for
  CPython 3.12 manylinux x86_64;
- pack the onnxruntime package alone (not its TensorRT provider, which needs TensorRT),
  gdal-wheel, the installed ``ukis-6b-l2a`` model and the 12-band sample scene into one
  xz-compressed tar;
- cut it into parts of at most ``--chunk-mib`` (60) MiB under ``out/gpu-stage/`` with a
  manifest of their sha256.

There, ``scripts/gpu_check.sh put`` copies one part per command into a temporary
folder, and ``scripts/gpu_check.sh run`` calls ``unpack`` (this file again: standard
library only) to check every part, reassemble, verify and extract, then measures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "bench" / "cache" / "gpu-wheels"
STAGE = ROOT / "out" / "gpu-stage"
ONNXRUNTIME_GPU = "onnxruntime-gpu==1.31.1"
GDAL_WHEEL = "gdal-wheel==3.13.3"
MODEL = "ukis-6b-l2a"
PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64"]
# Not needed for CUDA and large: TensorRT's provider (it needs TensorRT itself).
SKIP = ("libonnxruntime_providers_tensorrt.so",)
MIB = 1 << 20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def download() -> tuple[Path, Path]:
    WHEELS.mkdir(parents=True, exist_ok=True)

    def found(prefix: str) -> Path | None:
        return next(iter(sorted(WHEELS.glob(f"{prefix}-*-cp312-*manylinux*x86_64.whl"))), None)

    if not (found("onnxruntime_gpu") and found("gdal_wheel")):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                *PLATFORM,
                "-d",
                str(WHEELS),
                ONNXRUNTIME_GPU,
                GDAL_WHEEL,
            ],
            check=True,
        )
    return found("onnxruntime_gpu"), found("gdal_wheel")


def data_home() -> Path:
    """The data home as core/runtime/home.py finds it (core imports no QGIS)."""
    sys.path.insert(0, str(ROOT))
    from core.runtime import home

    return home.data_home()


def write_tar(tar_path: Path, ort_wheel: Path, gdal_wheel: Path, model: Path, sample: Path) -> list[str]:
    names = []
    with tarfile.open(tar_path, "w") as tar, zipfile.ZipFile(ort_wheel) as whl:
        for info in whl.infolist():
            top = info.filename.split("/")[0]
            if info.is_dir() or not (top == "onnxruntime" or top.endswith(".dist-info")):
                continue
            if info.filename.endswith(SKIP):
                continue
            member = tarfile.TarInfo(f"site/{info.filename}")
            member.size = info.file_size
            member.mode = 0o755 if info.filename.endswith(".so") or ".so." in info.filename else 0o644
            with whl.open(info) as data:
                tar.addfile(member, data)
            names.append(member.name)
        for source, name in (
            (gdal_wheel, f"wheels/{gdal_wheel.name}"),
            (model, f"home/models/{model.name}"),
            (sample, "sample/s2_12band.tif"),
        ):
            tar.add(source, arcname=name)
            names.append(name)
    return names


def stage(chunk_mib: int) -> int:
    ort_wheel, gdal_wheel = download()
    home = data_home()
    model = home / "models" / f"{MODEL}.onnx"
    sample = ROOT / "test" / "data" / "sample" / "s2_12band.tif"
    for needed in (model, sample):
        if not needed.exists():
            raise SystemExit(f"gpu_stage: {needed} is missing: run `make setup` first.")
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    # Compressing takes minutes: the archive is kept, and made again only when an input changed.
    key = json.dumps([ort_wheel.name, gdal_wheel.name, sha256(model), sha256(sample)])
    archive, archive_key = WHEELS / "stage.tar.xz", WHEELS / "stage.key"
    if not (archive.exists() and archive_key.exists() and archive_key.read_text() == key):
        with tempfile.TemporaryDirectory(prefix="cloudmask-stage-") as tmp:
            tar_path = Path(tmp) / "stage.tar"
            names = write_tar(tar_path, ort_wheel, gdal_wheel, model, sample)
            print(
                f"gpu_stage: {len(names)} files, {tar_path.stat().st_size / MIB:.0f} MiB; compressing (xz) ...",
                flush=True,
            )
            shutil.move(compress(tar_path), archive)
        archive_key.write_text(key)
    parts = split(archive, chunk_mib)
    manifest = {
        "parts": parts,
        "archive_sha256": sha256_of_parts(parts),
        "onnxruntime_gpu": ort_wheel.name,
        "gdal": gdal_wheel.name,
        "model": MODEL,
        "model_sha256": sha256(model),
    }
    (STAGE / "manifest.json").write_text(json.dumps(manifest, indent=1))
    total = sum(p["bytes"] for p in parts)
    print(f"gpu_stage: {len(parts)} parts, {total / MIB:.0f} MiB in all, in {STAGE}")
    print("gpu_stage: on the GPU machine, one command per part (carry the part and manifest.json):")
    for part in parts:
        print(
            f"  carry [out/gpu-stage/{part['name']}, out/gpu-stage/manifest.json]: "
            f"bash scripts/gpu_check.sh put out/gpu-stage/{part['name']}"
        )
    print("  then (carry [out/gpu-stage/manifest.json]): bash scripts/gpu_check.sh run")
    return 0


def compress(tar_path: Path) -> Path:
    """xz, multi-threaded where the xz program is there (Python's lzma unpacks it there)."""
    out = tar_path.with_suffix(".tar.xz")
    if shutil.which("xz"):
        with open(out, "wb") as handle:
            subprocess.run(["xz", "-6", "-T0", "-c", str(tar_path)], stdout=handle, check=True)
    else:
        with open(tar_path, "rb") as src, lzma.open(out, "wb", preset=6) as dst:
            shutil.copyfileobj(src, dst, MIB)
    return out


def split(archive: Path, chunk_mib: int) -> list[dict]:
    parts = []
    with open(archive, "rb") as handle:
        while block := handle.read(chunk_mib * MIB):
            part = STAGE / f"part-{len(parts):02d}"
            part.write_bytes(block)
            parts.append({"name": part.name, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    return parts


def sha256_of_parts(parts: list[dict]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        with open(STAGE / part["name"], "rb") as handle:
            for block in iter(lambda: handle.read(MIB), b""):
                digest.update(block)
    return digest.hexdigest()


def unpack(folder: Path) -> int:
    """Check the parts against the manifest, reassemble, verify, extract into ``folder/x``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    done = folder / "x" / ".unpacked"
    if done.exists() and done.read_text() == manifest["archive_sha256"]:
        print(f"gpu_stage: already unpacked in {folder / 'x'}")
        return 0
    missing = [p["name"] for p in manifest["parts"] if not (folder / p["name"]).exists()]
    if missing:
        print(f"gpu_stage: parts missing in {folder}: {', '.join(missing)} (put them first)", file=sys.stderr)
        return 2
    digest = hashlib.sha256()
    for part in manifest["parts"]:
        data = (folder / part["name"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != part["sha256"] or len(data) != part["bytes"]:
            print(f"gpu_stage: {part['name']} is damaged (sha256 differs): put it again", file=sys.stderr)
            return 2
        digest.update(data)
    if digest.hexdigest() != manifest["archive_sha256"]:
        print("gpu_stage: the reassembled archive's sha256 differs from the manifest", file=sys.stderr)
        return 2
    target = folder / "x"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    archive = folder / "stage.tar.xz"
    with open(archive, "wb") as handle:
        for part in manifest["parts"]:
            handle.write((folder / part["name"]).read_bytes())
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # no paths outside target
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(target, **safe)
    archive.unlink()
    model = target / "home" / "models" / f"{manifest['model']}.onnx"
    if sha256(model) != manifest["model_sha256"]:
        print(f"gpu_stage: {model} differs from the staged model", file=sys.stderr)
        return 2
    done.write_text(manifest["archive_sha256"])
    print(f"gpu_stage: unpacked {len(manifest['parts'])} parts into {target}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    staging = sub.add_parser("stage", help="here: download, pack, cut into parts under out/gpu-stage")
    staging.add_argument("--chunk-mib", type=int, default=60)
    unpacking = sub.add_parser("unpack", help="there: check, reassemble and extract the parts in FOLDER")
    unpacking.add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.command == "stage":
        return stage(args.chunk_mib)
    return unpack(args.folder)


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
