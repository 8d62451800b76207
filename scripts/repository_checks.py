"""Run plugins.qgis.org's upload checks on a plugin zip, offline, and list what they would flag.

The QGIS plugin repository (github.com/qgis/QGIS-Plugins-Website) checks every upload twice:
``plugins/validator.py`` rejects a zip whose layout or metadata.txt breaks its rules, and
``plugins/security_scanner.py`` runs Bandit, detect-secrets and flake8 on the extracted zip
with the rules its administrators enabled (``plugins/management/commands/data/*_rules.json``)
and blocks a version with critical findings. This script runs the same rules and tools, as
the site calls them, at the commit below. Not checked here: the validator's test that each
web address answers within 10 seconds (needs the network; only the address's form is checked),
and the site's Qt6 check, which runs QGIS's ``pyqt5_to_pyqt6.py --dry_run`` in a QGIS 4
container (not available offline; test/test_qt6.py checks the spellings that script rewrites).

Two checks are stricter than the site's:
- detect-secrets: the site passes ``--baseline`` when the zip ships ``.secrets.baseline``,
  which makes detect-secrets rewrite the baseline and print nothing, so any secret passes.
  Here the scan runs without the baseline and every finding must be one the baseline lists;
  and the baseline may list only the model cards' sha256 checksums.
- a finding of any severity fails, where the site blocks only critical ones.

Usage: scripts/repository_checks.py PLUGIN.zip [--dev]   (exit status 1 when anything is found)
       scripts/repository_checks.py --update-baseline   (rewrites .secrets.baseline from a dev zip)
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
SITE_COMMIT = "73c20fa990e4984e175235c8ba2a59cbf09a2685"  # qgis/QGIS-Plugins-Website, July 2026

# The rules the site enables by default (bandit_rules.json, flake8_rules.json, secrets_rules.json:
# "enabled": true). The site runs Bandit with exactly these tests, flake8 with exactly these codes,
# and detect-secrets with every other detector disabled.
# (space-separated, as the site's admin page lists them).
BANDIT_TESTS = (
    "B101 B102 B103 B104 B105 B106 B107 B108 B110 B111 B112 B113 B201 B202 B301 B302 B303 B304 B305"
    " B306 B307 B308 B310 B311 B312 B313 B314 B315 B316 B317 B318 B319 B320 B321 B323 B324 B401 B402"
    " B403 B405 B406 B407 B408 B409 B412 B413 B501 B502 B503 B504 B505 B506 B507 B508 B509 B601 B602"
    " B603 B604 B605 B606 B607 B608 B609 B610 B611 B612 B613 B614 B615 B701 B702 B703 B704"
)
FLAKE8_CODES = (
    "C901 E101 E711 E712 E713 E714 E721 E722 E731 E741 E742 E743 E901 E902 E999 F402 F403 F404 F405"
    " F811 F821 F822 F823 F831 F901 W605"
)
SECRETS_DISABLED = ("IPPublicDetector",)

# validator.py's own constants.
MAX_UPLOAD_BYTES = 25_000_000
REQUIRED_METADATA = (
    "name",
    "description",
    "version",
    "qgisMinimumVersion",
    "author",
    "email",
    "about",
    "tracker",
    "repository",
)
URL_KEYS = {"tracker": "http://bugs", "repository": "http://repo", "homepage": "http://homepage"}
BOOLEAN_METADATA = ("experimental", "deprecated", "server")
FORBIDDEN_DIRS = ("__MACOSX", ".git", "__pycache__")
# security_scanner.py's file checks.
SUSPICIOUS_EXTENSIONS = (".exe", ".dll", ".so", ".dylib", ".bat", ".sh", ".ps1", ".cmd")
ALLOWED_HIDDEN = (".gitignore", ".gitattributes", ".bandit", ".secrets.baseline", ".flake8")
BASELINE = ".secrets.baseline"


def validator_findings(zip_path: Path, dev: bool = False) -> list:
    """What validator.py would reject (and its warnings), as messages.

    ``dev``: a dev build (scripts/build_zip.py --dev) lacks the contact addresses on purpose;
    only their absence is excused, not a malformed value.
    """
    found = []
    if zip_path.stat().st_size > MAX_UPLOAD_BYTES:
        found.append(f"zip is {zip_path.stat().st_size} bytes, over the site's {MAX_UPLOAD_BYTES}")
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        found += _layout_findings(names)
        bad = archive.testzip()
        if bad:
            found.append(f"bad zip entry (CRC): {bad}")
        package = names[0].split("/")[0] if names and "/" in names[0] else ""
        if not package:
            return found + ["no folder at the top of the zip"]
        if not (package.isidentifier() and re.match(r"^[A-Za-z][A-Za-z0-9-_]+$", package)):
            found.append(f"top folder {package!r} is not a Python identifier")
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{package}/{required}" not in names:
                found.append(f"{required} missing from the zip")
        if f"{package}/metadata.txt" in names:
            text = archive.read(f"{package}/metadata.txt").decode("utf-8")
            found += metadata_findings(text, names, package, dev)
    return found


def _layout_findings(names: list) -> list:
    """The validator's rules on entry names: no paths out of the folder, no caches, one top folder."""
    found = []
    for name in names:
        if ".." in name or name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name):
            found.append(f"entry name not allowed: {name}")
        if ".pyc" in name:
            found.append(f"compiled Python file: {name}")
        for forbidden in FORBIDDEN_DIRS:
            if forbidden in name.split("/"):
                found.append(f"folder {forbidden} in the zip: {name}")
    tops = {name.split("/")[0] for name in names}
    if len(tops) > 1:
        found.append("more than one top folder: " + ", ".join(sorted(tops)))
    return found


def metadata_findings(text: str, names: list, package: str, dev: bool = False) -> list:
    """validator.py's metadata rules, and the keys QGIS 4 needs to offer and load the plugin."""
    parser = configparser.ConfigParser()
    parser.optionxform = str
    try:
        parser.read_string(text)
    except configparser.Error as error:
        return [f"metadata.txt does not parse: {error}"]
    if not parser.has_section("general"):
        return ["metadata.txt has no [general] section"]
    meta = dict(parser.items("general"))
    found = []
    for key in REQUIRED_METADATA:
        if not meta.get(key, "").strip() and not (dev and key in ("email", "tracker", "repository")):
            found.append(f"metadata.txt lacks {key}")
    for key, forbidden in URL_KEYS.items():
        url = meta.get(key, "").strip()
        if not url and dev:
            continue
        parsed = urlparse(url)
        if url == forbidden or not (parsed.scheme in ("http", "https") and parsed.netloc):
            found.append(f"metadata.txt {key} is not a web address: {url!r}")
    if meta.get("email") and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", meta["email"]):
        found.append(f"metadata.txt email is not an address: {meta['email']!r}")
    if "/" in meta.get("author", ""):
        found.append("metadata.txt author contains a slash")
    if f"{package}/{meta.get('icon', '').lstrip('./')}" not in names:
        found.append(f"metadata.txt icon {meta.get('icon')!r} is not in the zip")
    for key in BOOLEAN_METADATA:
        if key in meta and meta[key].strip().lower() not in ("true", "false", "yes", "no", "1", "0"):
            found.append(f"metadata.txt {key} is not a boolean: {meta[key]!r}")
    if meta.get("qgisMaximumVersion") != "4.99":
        found.append("metadata.txt qgisMaximumVersion is not 4.99: QGIS 4 would neither offer nor load the plugin")
    return found


def file_findings(zip_path: Path) -> list:
    """security_scanner.py's file checks: executable Python files, hidden and binary files."""
    found = []
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            base = os.path.basename(info.filename)
            if info.filename.endswith(".py") and (info.external_attr >> 16) & 0o111:
                found.append(f"executable Python file: {info.filename}")
            if base.startswith(".") and base not in ALLOWED_HIDDEN:
                found.append(f"hidden file: {info.filename}")
            if info.filename.lower().endswith(SUSPICIOUS_EXTENSIONS):
                found.append(f"executable or binary file: {info.filename}")
    return found


def _tool(module: str, args: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a scanner from this Python's environment (requirements-dev.txt installs them)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def bandit_findings(folder: Path) -> list:
    """Bandit with the site's tests, as the site runs it (nosec comments honoured, as there)."""
    result = _tool("bandit", ["-r", str(folder), "-f", "json", "--quiet", "-t", ",".join(BANDIT_TESTS.split())])
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        return [f"bandit did not run: {result.stderr.strip()[-500:]}"]
    return [
        f"bandit {item['test_id']} {os.path.relpath(item['filename'], folder)}:{item['line_number']}"
        f" {item['issue_text']}"
        for item in report.get("results", [])
    ]


def flake8_findings(folder: Path) -> list:
    """flake8 with the site's codes and line length, on every Python file of the zip."""
    files = sorted(str(path) for path in folder.rglob("*.py"))
    result = _tool("flake8", ["--max-line-length=120", "--select", ",".join(FLAKE8_CODES.split()), *files])
    if result.returncode not in (0, 1):
        return [f"flake8 did not run: {result.stderr.strip()[-500:]}"]
    return ["flake8 " + line.replace(str(folder) + os.sep, "") for line in result.stdout.splitlines() if line]


def secrets_scan(folder: Path) -> dict:
    """detect-secrets as the site runs it from the extracted zip's folder, without a baseline.

    Returns {path: [finding, ...]} with paths as the site sees them (``package/...``).
    """
    args = ["scan", "--all-files", "--exclude-files", r"metadata\.txt", "--exclude-files", r"\.secrets\.baseline"]
    for detector in SECRETS_DISABLED:
        args += ["--disable-plugin", detector]
    result = _tool("detect_secrets", [*args, "."], cwd=folder)
    return json.loads(result.stdout)


def secrets_findings(folder: Path, package: str) -> list:
    """Secrets the scan finds that the zip's baseline does not list, and baseline entries that are no checksum."""
    baseline_path = folder / package / BASELINE
    baseline = json.loads(baseline_path.read_text(encoding="utf-8")) if baseline_path.is_file() else {"results": {}}
    listed = {(path, item["hashed_secret"]) for path, items in baseline["results"].items() for item in items}
    found = [
        f"detect-secrets {item['type']} {path}:{item['line_number']} (not in {BASELINE}; a new model"
        " checksum? run scripts/repository_checks.py --update-baseline)"
        for path, items in secrets_scan(folder)["results"].items()
        for item in items
        if (path, item["hashed_secret"]) not in listed
    ]
    checksums = _model_checksum_hashes(folder / package)
    for path, hashed in sorted(listed):
        if hashed not in checksums.get(Path(path).relative_to(package).as_posix(), ()):
            found.append(f"{BASELINE} accepts {path} {hashed}, which is no model checksum")
    return found


def _model_checksum_hashes(plugin: Path) -> dict:
    """{models/card.json: sha1 of each sha256 value in it}: detect-secrets stores the sha1 of what it accepts."""
    hashes = {}
    for card in sorted(plugin.glob("models/*.json")):
        values = re.findall(r'"sha256"\s*:\s*"([0-9a-f]{64})"', card.read_text(encoding="utf-8"))
        hashes[f"models/{card.name}"] = {hashlib.sha1(value.encode()).hexdigest() for value in values}
    return hashes


def all_findings(zip_path: Path, dev: bool = False) -> list:
    """Every check on one zip: the validator's, the scanner's file checks, Bandit, detect-secrets, flake8."""
    found = validator_findings(zip_path, dev) + file_findings(zip_path)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(folder)
            package = archive.namelist()[0].split("/")[0]
        found += bandit_findings(folder) + secrets_findings(folder, package) + flake8_findings(folder)
    return found


def update_baseline() -> Path:
    """Rewrite .secrets.baseline from a dev zip's scan, as the site's docs say to make one."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import build_zip

    with tempfile.TemporaryDirectory() as tmp:
        zip_path = build_zip.build(Path(tmp) / "plugin.zip", release=False)
        folder = Path(tmp) / "unpacked"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(folder)
        report = secrets_scan(folder)
    report.pop("generated_at", None)  # keeps the file unchanged when nothing else changed
    (ROOT / BASELINE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return ROOT / BASELINE


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip", nargs="?", type=Path)
    parser.add_argument("--dev", action="store_true", help="a dev build: the contact addresses may be absent")
    parser.add_argument("--update-baseline", action="store_true", help=f"rewrite {BASELINE} and stop")
    args = parser.parse_args(argv)
    if args.update_baseline:
        print(update_baseline())
        return 0
    if not args.zip:
        parser.error("give the zip to check")
    found = all_findings(args.zip, args.dev)
    print("\n".join(found) if found else f"{args.zip}: no findings (plugins.qgis.org rules at {SITE_COMMIT[:7]})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
