"""Each checkout has its own plugins folder for ``qgis_process`` (scripts/plugin_root.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_second_clone_links_its_own_plugin_folder_and_leaves_ours_alone(tmp_path, plugin_dir):
    clone = tmp_path / "second-clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "plugin_root.py", clone / "scripts")
    shutil.copytree(ROOT / "core", clone / "core")  # what an older plugin_root loaded by path
    out = subprocess.run(
        [sys.executable, "-c", "import plugin_root; print(plugin_root.link_plugin())"],
        cwd=clone / "scripts",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    theirs = Path(out)
    assert (theirs / "cloud_mask_improver").resolve() == clone.resolve()
    assert theirs.resolve().is_relative_to(clone.resolve())
    # ours still runs this checkout's code under qgis_process
    assert (plugin_dir / "cloud_mask_improver").resolve() == ROOT
