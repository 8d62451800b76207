"""The zip `make zip` builds passes plugins.qgis.org's upload checks.

Its validator's metadata and layout rules and its security scan (Bandit, detect-secrets,
flake8 with the site's rules), run offline by scripts/repository_checks.py on the real zip.
A release build takes its contact addresses from pyproject.toml and is refused while one is
unset."""

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # left out of make test-fast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import build_zip
import repository_checks

# Addresses for the test's own copy of pyproject.toml (example.org is reserved for examples).
ADDRESSES = """
authors = [{ name = "Cloud Mask Improver developers", email = "maintainers@example.org" }]

[project.urls]
Homepage = "https://example.org/cloud-mask-improver"
Repository = "https://example.org/cloud-mask-improver.git"
Issues = "https://example.org/cloud-mask-improver/issues"
"""


def pyproject_with(tmp_path: Path, addresses: str) -> Path:
    """A copy of pyproject.toml with ``addresses`` added to [project] (the real one is left alone)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    marker = "\n[project.scripts]"
    path = tmp_path / "pyproject.toml"
    path.write_text(text.replace(marker, addresses + marker, 1), encoding="utf-8")
    return path


def zip_metadata(zip_path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.optionxform = str
    with zipfile.ZipFile(zip_path) as archive:
        parser.read_string(archive.read("cloud_mask_improver/metadata.txt").decode("utf-8"))
    return parser["general"]


@pytest.fixture(scope="module")
def release_zip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    return build_zip.build(folder / "cloud_mask_improver.zip", pyproject=pyproject_with(folder, ADDRESSES))


def test_release_zip_passes_every_repository_check(release_zip):
    assert repository_checks.all_findings(release_zip) == []


def test_release_zip_metadata_has_the_addresses_changelog_and_qgis4(release_zip):
    meta = zip_metadata(release_zip)
    assert meta["email"] == "maintainers@example.org"
    assert meta["homepage"] == "https://example.org/cloud-mask-improver"
    assert meta["repository"] == "https://example.org/cloud-mask-improver.git"
    assert meta["tracker"] == "https://example.org/cloud-mask-improver/issues"
    assert meta["qgisMaximumVersion"] == "4.99" and meta["supportsQt6"] == "True"
    # Listed for every user; docs/platforms.md says why, and must say what metadata.txt says.
    assert meta["experimental"] == "False"
    assert "`metadata.txt` says `experimental=False`" in (ROOT / "docs" / "platforms.md").read_text(encoding="utf-8")
    changelog = meta["changelog"].splitlines()
    newest = next(
        line for line in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").splitlines() if line.startswith("## [")
    )
    assert changelog[0].startswith(newest[4:].split("]")[0])
    assert any("0.1.0" in line for line in changelog) and all("`" not in line for line in changelog)
    # Everything else is the working tree's metadata.txt, unchanged.
    source = configparser.ConfigParser()
    source.optionxform = str
    source.read(ROOT / "metadata.txt", encoding="utf-8")
    for key, value in source["general"].items():
        assert meta[key] == value, key


def test_changelog_is_the_newest_versions_in_plain_text(tmp_path):
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(
        "# Changelog\n\nIntro.\n\n## [Unreleased]\n\n"
        "### Fixed\n- A hostile `MTD_*.xml` is refused (1.2 % faster); see\n"
        "  *Raster > Cloud Mask Improver*, **Remove**.\n\n## [0.3.0] - 2027-02-01\n\n### Added\n- Three.\n\n"
        "## [0.2.0] - 2027-01-01\n\n### Changed\n- Two.\n\n## [0.1.0] - 2026-12-01\n\n### Added\n- One.\n",
        encoding="utf-8",
    )
    assert build_zip.changelog_entries(changelog).splitlines() == [
        "Unreleased",
        "- Fixed: A hostile MTD_*.xml is refused (1.2 percent faster); see Raster > Cloud Mask Improver, Remove.",
        "0.3.0 (2027-02-01)",
        "- Added: Three.",
        "0.2.0 (2027-01-01)",
        "- Changed: Two.",
    ]


@pytest.mark.parametrize("unset", ["email", "homepage", "repository", "tracker"])
def test_release_build_is_refused_while_an_address_is_unset(tmp_path, unset):
    line = {"email": "authors =", "homepage": "Homepage =", "repository": "Repository =", "tracker": "Issues ="}
    addresses = "\n".join(text for text in ADDRESSES.splitlines() if not text.startswith(line[unset]))
    out = tmp_path / "plugin.zip"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_zip.py"),
            "--pyproject",
            str(pyproject_with(tmp_path, addresses)),
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert f"metadata.txt would lack {unset}, which plugins.qgis.org requires" in done.stderr
    assert "make zip DEV=1" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "pyproject.toml"]  # no zip, no partial file


def test_dev_zip_lacks_only_the_addresses(tmp_path):
    """The desktop tests' build: the same zip less the addresses, which the validator would reject."""
    dev = build_zip.build(tmp_path / "dev.zip", release=False, pyproject=pyproject_with(tmp_path, ""))
    assert repository_checks.validator_findings(dev, dev=True) == []
    assert repository_checks.validator_findings(dev) == [
        "metadata.txt lacks email",
        "metadata.txt lacks tracker",
        "metadata.txt lacks repository",
        "metadata.txt tracker is not a web address: ''",
        "metadata.txt repository is not a web address: ''",
        "metadata.txt homepage is not a web address: ''",
    ]


def with_extra(zip_path: Path, out: Path, extra: dict, metadata_edit=None) -> Path:
    """A copy of the plugin zip with files added or replaced (and metadata.txt edited)."""
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in source.infolist():
            if info.filename.split("/", 1)[1] in extra:
                continue
            data = source.read(info)
            if metadata_edit and info.filename.endswith("/metadata.txt"):
                data = metadata_edit(data.decode("utf-8")).encode("utf-8")
            copy.writestr(info, data)
        for name, text in extra.items():
            copy.writestr(f"cloud_mask_improver/{name}", text)
    return out


def test_the_checks_find_what_the_site_would_flag(release_zip, tmp_path):
    """Each tool really runs: a zip with one flaw per check gets one finding per flaw."""
    baseline = (ROOT / ".secrets.baseline").read_text(encoding="utf-8")
    flawed = with_extra(
        release_zip,
        tmp_path / "flawed.zip",
        {
            "core/shell.py": "import subprocess\n\n\ndef run(text):\n    return subprocess.call(text, shell=True)\n",
            "core/token.py": 'AWS_KEY = "AKIAIOSFODNN7EXAMPLX"\n',
            "core/bare.py": "try:\n    import numpy\nexcept:\n    numpy = None\n",
            "core/cached.pyc": "",
            # A baseline that accepts something else than a model checksum would hide a secret.
            ".secrets.baseline": baseline.replace('"hashed_secret": "', '"hashed_secret": "0', 1),
        },
        metadata_edit=lambda text: text.replace("qgisMaximumVersion=4.99\n", ""),
    )
    found = "\n".join(repository_checks.all_findings(flawed))
    assert "bandit B602 cloud_mask_improver/core/shell.py:5" in found
    assert "detect-secrets AWS Access Key cloud_mask_improver/core/token.py:1" in found
    assert "flake8 cloud_mask_improver/core/bare.py:3:1: E722" in found
    assert "compiled Python file: cloud_mask_improver/core/cached.pyc" in found
    assert "qgisMaximumVersion is not 4.99" in found
    assert "which is no model checksum" in found


def test_the_baseline_ships_in_the_zip(release_zip):
    """The site's scanner looks for it beside metadata.txt (and it is no file the site flags as hidden)."""
    with zipfile.ZipFile(release_zip) as archive:
        assert "cloud_mask_improver/.secrets.baseline" in archive.namelist()
