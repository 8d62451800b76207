"""``cloudmask``: the command line, without QGIS (GDAL, numpy, onnxruntime, the models; Dask for batches).

    cloudmask batch INPUTS... --out DIR [--area fields.gpkg] [--workers N]
                              [--scheduler tcp://host:8786] [--force] [--masked [BANDS]] [--source]
                              [model/threshold options]
    cloudmask apply RASTER MASK OUTPUT [--classes cloud,shadow,nodata] [--buffer METRES]
    cloudmask models [--install [ID ...]]

``batch`` writes one mask per product, ``summary.csv`` + ``summary.gpkg``, the
season layers of each tile and ``season_report.html`` into ``--out``; the exit status is 0
when every product succeeded, 1 when some failed (they are listed), 2 for a usage error, 130 when interrupted.
``apply`` is Apply cloud mask: 0 when written, 2 for a bad input (nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

# The public API (__init__.py), as every front-end. What only one command needs is imported in it.
from . import (
    MASKED_CLASSES,
    OUTPUT_MODES,
    PRODUCT_KINDS,
    PROVIDERS,
    BatchOptions,
    BatchRow,
    CloudMaskError,
    MergeSettings,
    SettingsError,
    applied_mask_warnings,
    apply_cloud_mask,
    batch_template,
    clean_partials,
    describe_applied_mask,
    parse_band_list,
    plan_items,
    prepare_output_folder,
    run_sequential,
)

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudmask", description="Cloud Mask Improver without QGIS.")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser(
        "batch",
        help="improve the cloud masks of many Sentinel-2 products",
        description="One improved cloud mask per product (named <tile>_<sensing time>_<level>.tif) and a "
        "summary (summary.csv, summary.gpkg) in --out. Products already done with the same "
        "input and parameters are skipped (see --force).",
    )
    b.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="products (.zip, .SAFE folder, MTD_MSIL*.xml), band stacks (.tif/.vrt), folders "
        "or file patterns such as '2025/*.zip'",
    )
    b.add_argument("--out", required=True, help="folder for the masks and the summary (created if missing)")
    b.add_argument(
        "--pattern",
        default="",
        help="file pattern(s) for folder inputs, comma-separated (default: *.zip,*.SAFE,*.tif,*.tiff,*.vrt)",
    )
    b.add_argument(
        "--area", help="polygon file (GeoPackage, Shapefile, GeoJSON...): work only where it is; fractions per polygon"
    )
    b.add_argument("--area-layer", help="layer of --area (default: its first)")
    b.add_argument("--nodata-outside-area", action="store_true", help="mask pixels outside the polygons as nodata")
    b.add_argument(
        "--workers",
        type=int,
        default=0,
        help="products at once on this machine (default: as many as the cores and memory allow)",
    )
    b.add_argument(
        "--threads",
        type=int,
        default=0,
        help="onnxruntime threads per product (default: the cores shared among the workers)",
    )
    b.add_argument(
        "--scheduler", help="address of a running Dask scheduler (tcp://host:8786) instead of workers on this machine"
    )
    b.add_argument("--sequential", action="store_true", help="no Dask: one product after the other in this process")
    b.add_argument("--force", action="store_true", help="redo every product, even those already done")
    b.add_argument(
        "--masked",
        nargs="?",
        const="",
        default=None,
        metavar="BANDS",
        help="also write each product's imagery with its mask applied (cloud, shadow and nodata set "
        "to nodata) beside the mask, as <mask name>_masked.tif; optionally only these bands, "
        "comma-separated (e.g. B02,B03,B04,B08)",
    )
    b.add_argument(
        "--source",
        action="store_true",
        help="also write each product's SOURCE raster beside its mask, as <mask name>_source.tif: "
        "which source flagged each pixel (product mask, cloud model, shadow model, dilation); "
        "the summary gets its figures",
    )
    m = b.add_argument_group("models and thresholds (as Improve cloud mask)")
    m.add_argument(
        "--cloud-model",
        action="append",
        default=[],
        help="installed model id or .onnx path; repeat for an ensemble (default: the best installed "
        "model of each product's level)",
    )
    m.add_argument(
        "--ensemble",
        action="store_true",
        help="mean of every installed cloud model of the level (when no --cloud-model is given)",
    )
    m.add_argument(
        "--shadow-model", default="", help="model id or .onnx path (default: the cloud model when it gives shadow too)"
    )
    m.add_argument("--cloud-threshold", type=float, help="0..1 (default: the model's recommended value)")
    m.add_argument("--shadow-threshold", type=float, help="0..1 (default: the model's recommended value)")
    a = b.add_argument_group("advanced")
    a.add_argument("--bands", default="", help="Sentinel-2 band of each raster band, comma-separated")
    a.add_argument(
        "--resolution",
        type=float,
        default=None,
        help="processing resolution in metres (default: the models' own, 30 m for the UKIS "
        "models; 0: each raster's own)",
    )
    a.add_argument("--product-mask-kind", choices=PRODUCT_KINDS, default=MergeSettings.product_kind)
    a.add_argument("--dilation", type=int, default=MergeSettings.dilation, help="dilation radius in pixels")
    a.add_argument(
        "--min-area",
        type=int,
        default=MergeSettings.min_area,
        help="FarmVibes.AI min_area: after the dilation, clear cloud/shadow patches and fill "
        "clear gaps smaller than this (pixels)",
    )
    a.add_argument("--output-mode", choices=OUTPUT_MODES, default=MergeSettings.output_mode)
    a.add_argument("--execution-provider", choices=PROVIDERS, default="auto")
    _season_arguments(b)
    ap = commands.add_parser(
        "apply",
        help="set the cloudy pixels of a raster to nodata with an improved cloud mask",
        description="Apply cloud mask: a copy of RASTER (any grid or CRS; all bands and the data type kept) with "
        "the chosen classes of MASK (a mask from Improve cloud mask) set to nodata.",
    )
    ap.add_argument("raster", help="the raster to mask (a Sentinel-2 stack, one band, an index...)")
    ap.add_argument("mask", help="the improved cloud mask (0 clear, 1 cloud, 2 shadow, 255 nodata)")
    ap.add_argument("output", help="the masked raster (GeoTIFF)")
    ap.add_argument(
        "--classes",
        default=",".join(MASKED_CLASSES),
        help=f"classes to mask, comma-separated, among {', '.join(MASKED_CLASSES)} (default: all)",
    )
    ap.add_argument("--buffer", type=float, default=0.0, help="grow cloud and shadow by this many metres first")
    models_cmd = commands.add_parser("models", help="list the models, or install them into the data home")
    models_cmd.add_argument(
        "--install", nargs="*", metavar="ID", help="install these models (default: all downloadable), checked by sha256"
    )
    return parser


def _season_arguments(parser: argparse.ArgumentParser) -> None:
    from . import DEFAULT_MIN_DATES, DEFAULT_SHARE

    s = parser.add_argument_group("season layers and report (season_<tile>_*.tif, season_report.html)")
    s.add_argument(
        "--persistent-share",
        type=float,
        default=DEFAULT_SHARE,
        help=f"persistent cloud: cloud on at least this share of a pixel's dates with data (default {DEFAULT_SHARE})",
    )
    s.add_argument(
        "--persistent-min-dates",
        type=int,
        default=DEFAULT_MIN_DATES,
        help=f"persistent cloud: only pixels with at least this many dates with data (default {DEFAULT_MIN_DATES})",
    )


def _season_settings(args):
    from . import SeasonSettings

    settings = SeasonSettings(args.persistent_share, args.persistent_min_dates)
    settings.validate()
    return settings


def _season(rows, args, settings, area) -> None:
    """Season layers (they fill the rows' persistent cloud share) and the report, before the summary."""
    from . import season_outputs

    season, path = season_outputs(rows, args.out, settings, area)
    for message in season.messages:
        print(f"cloudmask: {message}", file=sys.stderr)
    for tile in season.tiles:
        print(
            f"cloudmask: {tile.tile or 'season'}: {tile.dates} date(s), {tile.persistent} pixel(s) cloud on "
            f"most dates; layers {os.path.join(args.out, tile.name)}_*.tif",
            file=sys.stderr,
        )
    print(f"cloudmask: season report {path}", file=sys.stderr)


def _options(args) -> BatchOptions:
    cloud = tuple(m.strip() for value in args.cloud_model for m in value.split(",") if m.strip())
    settings = MergeSettings(
        product_kind=args.product_mask_kind,
        dilation=args.dilation,
        min_area=args.min_area,
        output_mode=args.output_mode,
    )
    request = replace(
        batch_template(
            cloud_models=cloud,
            shadow_model=args.shadow_model.strip() or None,
            bands=args.bands,
            resolution=args.resolution,
            provider=args.execution_provider,
            threads=args.threads,
        ),
        settings=settings,
        cloud_threshold=args.cloud_threshold,
        shadow_threshold=args.shadow_threshold,
        ensemble=args.ensemble or len(cloud) > 1,
    )
    options = BatchOptions(
        request,
        blank_outside=args.nodata_outside_area,
        masked=args.masked is not None,
        masked_bands=args.masked or "",
        source=args.source,
    )
    for value, name in ((args.cloud_threshold, "--cloud-threshold"), (args.shadow_threshold, "--shadow-threshold")):
        if value is not None and not 0 <= value <= 1:
            raise SettingsError(f"{name} {value} is outside 0..1: give a probability, or leave it out.")
    settings.validate()
    if options.masked_bands:
        parse_band_list(options.masked_bands)  # a typo is a usage error, not a failure of every product
    return options


class _Bar:
    """One line on the terminal: done/total, failures, reused, elapsed and the time left."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.stream, self.start = total, stream, time.monotonic()
        self.done = self.failed = self.reused = 0
        self.tty = stream.isatty()

    def __call__(self, row) -> None:
        self.done += 1
        self.failed += not row.ok
        self.reused += row.reused
        if not row.ok:
            self._line(f"failed: {row.input}: {row.error}", final=True)
        self.show()

    def show(self) -> None:
        width = 30
        filled = int(width * self.done / max(1, self.total))
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else 0
        text = (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} products"
            f" ({self.failed} failed, {self.reused} already done) {elapsed:.0f} s, about {left:.0f} s left"
        )
        self._line(text, final=not self.tty or self.done == self.total)

    def _line(self, text: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()


def _batch(args) -> int:
    from . import read_area

    try:
        options = _options(args)
        season_settings = _season_settings(args)
        prepare_output_folder(args.out)
        area = read_area(args.area, args.area_layer) if args.area else None
        items = plan_items(args.inputs, args.pattern)
    except (ValueError, OSError) as err:
        print(f"cloudmask: {err}", file=sys.stderr)
        return EXIT_USAGE
    if not items:
        print("cloudmask: no product found in the inputs.", file=sys.stderr)
        return EXIT_USAGE
    clean_partials(args.out, items)  # left by an earlier run that was killed
    bar = _Bar(len(items))
    print(f"cloudmask: {len(items)} product(s) -> {os.path.abspath(args.out)}", file=sys.stderr)
    rows: list[BatchRow] = []
    try:
        if args.sequential:
            rows = run_sequential(items, options, args.out, area, args.force, on_row=bar)
        else:
            rows = _on_dask(items, options, args, area, bar)
    except KeyboardInterrupt as err:
        rows = getattr(err, "rows", rows)
        _write_summary(rows, args.out)
        print(
            f"\ncloudmask: interrupted; {len(rows)} of {len(items)} products finished (their masks are "
            "complete, no partial file is left). Run the same command again to do the rest.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    _season(rows, args, season_settings, area)
    written = _write_summary(rows, args.out)
    failed = [r for r in rows if not r.ok]
    if failed:
        print(f"cloudmask: {len(failed)} of {len(rows)} product(s) failed:", file=sys.stderr)
        for row in failed:
            print(f"  {row.input}: {row.error}", file=sys.stderr)
    return EXIT_FAILED if failed or written is None else 0


def _write_summary(rows: list[BatchRow], out: str) -> dict | None:
    """Write the summary and say where; None when a summary file was in use (said why)."""
    from . import SummaryInUseError, write_summary

    try:
        written = write_summary(rows, out)
    except SummaryInUseError as err:
        print(f"cloudmask: {err}", file=sys.stderr)
        return None
    print(f"cloudmask: summary {written['csv']} and {written['gpkg']}", file=sys.stderr)
    return written


def _on_dask(items, options, args, area, bar):
    from distributed import Client

    from . import local_cluster, run_on_cluster, size_cluster

    if args.scheduler:
        client, cluster = Client(args.scheduler), None
        print(f"cloudmask: Dask scheduler {args.scheduler}", file=sys.stderr)
    else:
        sizing = size_cluster(len(items), args.workers, args.threads)
        asked = options.request
        options = replace(
            options, request=replace(asked, probability=replace(asked.probability, threads=sizing.threads))
        )
        cluster = local_cluster(sizing)
        client = Client(cluster)
        print(f"cloudmask: {sizing.describe()}", file=sys.stderr)
    try:
        link = client.dashboard_link if _has_dashboard(client) else "none (install bokeh for a dashboard)"
        print(f"cloudmask: scheduler {client.scheduler_info()['address']}; dashboard {link}", file=sys.stderr)
        return run_on_cluster(items, options, args.out, client, area, args.force, on_row=bar)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _has_dashboard(client) -> bool:
    """A dashboard is served (Dask's needs bokeh: a remote scheduler may have it, this venv has not)."""
    import importlib.util

    try:
        served = "dashboard" in client.scheduler_info().get("services", {})
    except Exception:  # noqa: BLE001 - no dashboard to show is not an error
        return False
    return served and (client.cluster is None or importlib.util.find_spec("bokeh") is not None)


def _apply(args) -> int:
    from . import Feedback

    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    try:
        result = apply_cloud_mask(args.raster, args.mask, args.output, classes, args.buffer, Feedback())
    except CloudMaskError as err:
        print(f"cloudmask: {err} Nothing was written.", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ncloudmask: interrupted; nothing was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"cloudmask: {args.output}: {describe_applied_mask(result)}", file=sys.stderr)
    for warning in applied_mask_warnings(result):
        print(f"cloudmask: note: {warning}", file=sys.stderr)
    return 0


def _models(args) -> int:
    from . import all_cards, downloadable_models, install_model, is_installed, models_dir

    folder = models_dir()
    if args.install is not None:
        wanted = set(args.install)
        for card in downloadable_models(folder):
            if not wanted or card.id in wanted:
                install_model(card, folder, log=lambda text: print(text, file=sys.stderr))
    for card in sorted(all_cards(folder).values(), key=lambda c: c.id):
        state = "installed" if is_installed(card, folder) else "not installed"
        print(f"{card.id:20} {card.level:4} {state:14} sha256 {card.sha256[:16] or '-'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import ensure_on_path

    ensure_on_path()  # onnxruntime from the data home when this Python lacks it
    args = _parser().parse_args(argv)
    if args.command == "models":
        return _models(args)
    if args.command == "apply":
        return _apply(args)
    return _batch(args)


if __name__ == "__main__":
    sys.exit(main())
