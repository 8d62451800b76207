"""Build the plugin zip that "Install from ZIP" and plugins.qgis.org take.

The zip holds the plugin's files as they are in the working tree (tracked files, and new files
git does not ignore), so the desktop tests install exactly the code under test. Its
metadata.txt gets what only a release knows, each from the one place a maintainer edits:
the contact email and web addresses from pyproject.toml (``authors`` and ``[project.urls]``)
and the ``changelog`` from CHANGELOG.md's newest entries.

A release build (the default) refuses to run while an address is unset: plugins.qgis.org
rejects such an upload, and an invented address would mislead users. ``--dev`` builds the
same zip without them, for the desktop tests and a local *Install from ZIP*.

Usage: scripts/build_zip.py [--dev] [OUTPUT.zip]   (default: build/cloud_mask_improver.zip)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cloud_mask_improver"
# Development material: not part of the installed plugin.
NOT_SHIPPED = (":!test", ":!.ci", ":!scripts", ":!docs", ":!.pre-commit-config.yaml", ":!.git-blame-ignore-revs")
# metadata.txt keys this build writes; pyproject.toml and CHANGELOG.md are their one source.
ADDRESS_KEYS = ("email", "homepage", "repository", "tracker")
WRITTEN_KEYS = ADDRESS_KEYS + ("changelog",)
# How many versions of CHANGELOG.md the Plugin Manager's "changelog" shows.
CHANGELOG_VERSIONS = 3


class ReleaseRefused(Exception):
    """A release build cannot be made as things are; the message says why and what to do."""


def load_toml(path: Path) -> dict:
    """pyproject.toml as a dict (tomllib from Python 3.11 on, tomli before)."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the build tools' tomli, if installed
        import tomli as tomllib
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def release_addresses(pyproject: Path) -> dict:
    """The four metadata.txt address keys from pyproject.toml; unset ones are absent.

    email is the first author's; homepage, repository and tracker are [project.urls]'
    Homepage, Repository and Issues.
    """
    project = load_toml(pyproject).get("project", {})
    urls = project.get("urls", {})
    emails = [author.get("email", "") for author in project.get("authors", []) if author.get("email")]
    found = {
        "email": emails[0] if emails else "",
        "homepage": urls.get("Homepage", ""),
        "repository": urls.get("Repository", ""),
        "tracker": urls.get("Issues", ""),
    }
    return {key: value.strip() for key, value in found.items() if value and value.strip()}


def changelog_entries(changelog: Path, versions: int = CHANGELOG_VERSIONS) -> str:
    """The newest ``versions`` sections of CHANGELOG.md as plain text, one line per change.

    Markdown emphasis and code marks are dropped (the Plugin Manager shows plain text);
    a bullet wrapped over several lines becomes one line.
    """
    sections = []
    for line in changelog.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## \[([^\]]+)\](?:\s*-\s*(\S+))?", line)
        if heading:
            title = heading.group(1) + (f" ({heading.group(2)})" if heading.group(2) else "")
            sections.append([title, None, []])
        elif not sections:
            continue
        elif line.startswith("### "):
            sections[-1][1] = line[4:].strip()
        elif line.startswith("- "):
            sections[-1][2].append(f"{sections[-1][1]}: {line[2:].strip()}" if sections[-1][1] else line[2:].strip())
        elif line.startswith("  ") and sections[-1][2]:
            sections[-1][2][-1] += " " + line.strip()
    lines = []
    for title, _kind, changes in [s for s in sections if s[2]][:versions]:
        lines.append(title)
        lines.extend("- " + _plain(change) for change in changes)
    return "\n".join(lines)


def _plain(markdown: str) -> str:
    """Markdown's code marks, **strong** and *emphasis* dropped; a lone * (as in MTD_*.xml) stays.

    "%" is written as a word: QGIS and the plugin site read metadata.txt with configparser,
    whose interpolation takes a lone "%" for an error and refuses the whole file."""
    text = markdown.replace("`", "")
    for marks in (r"\*\*", r"\*"):
        text = re.sub(rf"(?<![\w*]){marks}([^*\s][^*]*?){marks}(?![\w*])", r"\1", text)
    return re.sub(r"\s*%", " percent", text)


def metadata_for_zip(metadata: str, written: dict) -> str:
    """metadata.txt with the keys this build owns replaced by ``written``'s values.

    Any existing line for those keys (and its indented continuation lines) goes; the new
    values follow the [general] section's last line. Multi-line values are indented, as
    QGIS's metadata parser (configparser) reads them.
    """
    kept, skipping = [], False
    for line in metadata.splitlines():
        key = re.match(r"^([A-Za-z]+)\s*=", line)  # continuation lines are indented
        if key:
            skipping = key.group(1) in WRITTEN_KEYS
        elif not (line.startswith((" ", "\t")) and line.strip()):
            skipping = False
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    for key in WRITTEN_KEYS:
        if written.get(key):
            kept.append(f"{key}=" + written[key].replace("\n", "\n    "))
    return "\n".join(kept) + "\n"


def shipped_files(root: Path) -> list:
    """The working tree's plugin files: tracked and new-but-not-ignored, development folders left out."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".", *NOT_SHIPPED],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted(name for name in set(listing.split("\0")) if name and (root / name).is_file())


def build(out: Path, release: bool = True, root: Path = ROOT, pyproject: Path | None = None) -> Path:
    """Write the plugin zip to ``out`` (atomically: a refused or failed build leaves no zip)."""
    addresses = release_addresses(pyproject or root / "pyproject.toml")
    missing = [key for key in ADDRESS_KEYS if key not in addresses]
    if release and missing:
        raise ReleaseRefused(
            "make zip: refusing a release build: metadata.txt would lack "
            + ", ".join(missing)
            + ", which plugins.qgis.org requires (it rejects an upload without them and checks that"
            " the web addresses answer). Set them in pyproject.toml (authors' email; [project.urls]"
            " Homepage, Repository, Issues) to real addresses, or build for a local install or the"
            " tests with `make zip DEV=1` (scripts/build_zip.py --dev)."
        )
    written = dict(addresses, changelog=changelog_entries(root / "CHANGELOG.md"))
    metadata = metadata_for_zip((root / "metadata.txt").read_text(encoding="utf-8"), written)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in shipped_files(root):
            if name == "metadata.txt":
                archive.writestr(_entry(root / name, f"{PACKAGE}/{name}"), metadata.encode("utf-8"))
            else:
                archive.write(root / name, f"{PACKAGE}/{name}")
    partial.replace(out)
    return out


def _entry(source: Path, name: str) -> zipfile.ZipInfo:
    """A zip entry for generated content with the source file's date and permissions."""
    info = zipfile.ZipInfo.from_file(source, name)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="build without the contact addresses (not for upload)")
    parser.add_argument("--pyproject", type=Path, help="take the addresses from this file (default: pyproject.toml)")
    parser.add_argument("output", nargs="?", default=str(ROOT / "build" / f"{PACKAGE}.zip"))
    args = parser.parse_args(argv)
    try:
        print(build(Path(args.output), release=not args.dev, pyproject=args.pyproject))
    except ReleaseRefused as refused:
        print(refused, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
