"""The ``cloudmask`` command: it runs where QGIS is absent, reports bad products, survives a lost worker.

Bad products are reported with a non-zero exit status, and a Dask run survives a worker
killed in the middle of a product with the same bytes as a run in one process."""

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from s2_product import build_product

from cloud_mask_improver.core.season import batch, dask_cluster

ROOT = Path(__file__).resolve().parent.parent
# At the raster's own resolution: a product takes seconds, long enough to be killed midway.
OPTIONS = batch.BatchOptions(batch.template(cloud_models=("ukis-6b-l2a",), threads=1, resolution=0))
# Run the command in a Python where ``import qgis`` fails, as on a worker machine.
NO_QGIS = (
    "import sys; sys.modules['qgis'] = None; sys.path.insert(0, {plugins!r}); "
    "from cloud_mask_improver.core import cli; sys.exit(cli.main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    """Three readable products (one product, as a zip, as a folder and a copy) and a broken zip."""
    folder = tmp_path_factory.mktemp("cli")
    fixture = build_product(folder, "L2A", "04.00")
    copy = folder / "copy"
    copy.mkdir()
    (copy / fixture.zip.name).write_bytes(fixture.zip.read_bytes())
    bad = folder / "S2A_MSIL2A_20230625T100559_N0500_R022_T33TUK_20230625T130000.zip"
    bad.write_bytes(b"PK\x03\x04 interrupted")
    return {"good": [str(fixture.zip), str(fixture.safe), str(copy / fixture.zip.name)], "bad": str(bad)}


def _command(plugin_dir, *args, **kwargs):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-c", NO_QGIS.format(plugins=str(plugin_dir)), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        **kwargs,
    )


def test_command_runs_without_qgis_and_reports_bad_products(season, tmp_path, plugin_dir):
    out = tmp_path / "out"
    done = _command(
        plugin_dir,
        "batch",
        season["good"][0],
        season["bad"],
        "--out",
        str(out),
        "--sequential",
        "--cloud-model",
        "ukis-6b-l2a",
    )
    assert done.returncode == 1, done.stderr
    assert "1 of 2 product(s) failed" in done.stderr and season["bad"] in done.stderr
    assert "Traceback" not in done.stderr
    with open(out / "summary.csv", newline="") as handle:
        rows = {r["input"]: r for r in csv.DictReader(handle)}
    assert rows[season["good"][0]]["status"] == "ok" and rows[season["bad"]]["status"] == "failed"
    assert (out / "summary.gpkg").exists() and (out / "T33TUK_20230615T100559_L2A.tif").exists()
    # A second run finds the mask done; only the broken product is tried again.
    again = _command(
        plugin_dir, "batch", season["good"][0], "--out", str(out), "--sequential", "--cloud-model", "ukis-6b-l2a"
    )
    assert again.returncode == 0 and "1 already done" in again.stderr


def test_usage_errors_exit_2_with_a_message(tmp_path, plugin_dir):
    done = _command(plugin_dir, "batch", str(tmp_path), "--out", str(tmp_path / "o"), "--sequential")
    assert done.returncode == 2 and "holds no file matching" in done.stderr
    done = _command(plugin_dir, "batch", "x.zip", "--out", str(tmp_path / "o"), "--cloud-threshold", "2")
    assert done.returncode == 2 and "outside 0..1" in done.stderr
    # A folder nobody can write to (/proc, root included): refused at once, not after every product.
    done = _command(plugin_dir, "batch", "x.zip", "--out", "/proc", "--sequential")
    assert done.returncode == 2 and "'/proc' is not writable" in done.stderr, done.stderr


def test_console_script_is_installed_by_setup():
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "cloudmask"), "batch", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "--scheduler" in done.stdout


def test_the_command_lines_defaults_are_the_merges():
    """The defaults are declared once (MergeSettings, from choices.DEFAULTS).

    The command line offers the same, and its request for every product is a plain improve
    request."""
    from cloud_mask_improver.core import cli, pipeline
    from cloud_mask_improver.core.merge import MergeSettings

    args = cli._parser().parse_args(["batch", "in.zip", "--out", "out"])
    options = cli._options(args)
    assert options.request.settings == MergeSettings()
    assert options.request == pipeline.ImproveRequest(pipeline.ProbabilityRequest(""))
    args = cli._parser().parse_args(["batch", "in.zip", "--out", "out", "--dilation", "2", "--cloud-model", "a,b"])
    options = cli._options(args)
    assert options.request.settings.dilation == 2 and options.request.probability.cloud_models == ("a", "b")
    assert options.request.ensemble


def test_sizing_fits_cores_and_memory():
    gb = 1024**3
    assert dask_cluster.size_cluster(40, cpus=16, memory=64 * gb) == dask_cluster.Sizing(8, 2, 8 * gb)
    small = dask_cluster.size_cluster(40, cpus=16, memory=4 * gb)  # memory bounds the workers
    assert small.workers == 2 and small.threads == 8
    assert dask_cluster.size_cluster(1, cpus=16, memory=64 * gb).workers == 1  # never more than products
    assert dask_cluster.size_cluster(8, workers=2, cpus=2, memory=24 * gb).threads == 1


def _kill_first_busy_worker(client, killed: list):
    """SIGKILL the worker process that is running a product (once one is)."""
    pids = client.run(os.getpid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not killed:
        busy = [w for w, keys in client.processing().items() if keys]
        if busy:
            time.sleep(0.5)  # well inside the product (each takes seconds)
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(busy[0])
            return
        time.sleep(0.05)


def test_a_worker_killed_mid_product_changes_nothing(season, tmp_path):
    from distributed import Client, LocalCluster

    items = batch.plan_items(season["good"] + [season["bad"]])
    reference = tmp_path / "sequential"
    reference.mkdir()
    expected = {
        Path(r.mask).name: Path(r.mask).read_bytes()
        for r in batch.run_sequential(items, OPTIONS, str(reference))
        if r.ok
    }
    assert len(expected) == 3
    out = tmp_path / "dask"
    out.mkdir()
    # What a worker killed while writing a mask leaves behind (hidden, renamed only when complete).
    (out / f".{items[0].name}.tif.partial-0badf00d.tif").write_bytes(b"half a mask")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        killed: list = []
        killer = threading.Thread(target=_kill_first_busy_worker, args=(client, killed))
        killer.start()
        rows = batch.run_on_cluster(items, OPTIONS, str(out), client)
        killer.join()
    assert killed, "no worker was killed: the test proved nothing"
    assert len(rows) == 4 and sum(r.ok for r in rows) == 3
    assert {Path(r.mask).name: Path(r.mask).read_bytes() for r in rows if r.ok} == expected
    assert not list(out.glob(".*partial*"))


def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(season, tmp_path, plugin_dir):
    """Ctrl-C in a terminal interrupts the whole process group: the command and its workers."""
    out = tmp_path / "out"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    args = ["batch", *season["good"], "--out", str(out), "--workers", "1", "--cloud-model", "ukis-6b-l2a"]
    # A terminal's Ctrl-C reaches a program whose SIGINT is Python's default: so it must be here
    # too, also when the tests themselves run as a background job (a shell then ignores SIGINT
    # for it, and Python keeps an inherited SIGINT ignored).
    as_in_a_terminal = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    command = subprocess.Popen(
        [sys.executable, "-c", as_in_a_terminal + NO_QGIS.format(plugins=str(plugin_dir)), *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    seen = ""
    for line in command.stderr:  # wait for the first product to finish
        seen += line
        if "1/3 products" in line:
            break
    os.killpg(command.pid, signal.SIGINT)
    _, rest = command.communicate(timeout=120)
    assert command.returncode == 130, seen + rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert (out / "summary.csv").exists() and not list(out.glob(".*partial*"))
    assert 1 <= len(list(out.glob("T33TUK_*.tif"))) < 3
    again = _command(plugin_dir, *args)
    assert again.returncode == 0 and "already done" in again.stderr
    assert len(list(out.glob("T33TUK_*.tif"))) == 3  # the masks (the season layers are season_*.tif)
