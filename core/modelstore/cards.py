"""Model cards: everything model-specific, so that adding a model is adding a card.

A card is a JSON file beside its ``.onnx`` (same stem) or, for the models we
know, committed in the plugin's ``models/`` folder. It says which bands the
model reads and in what order, how to scale them, how to tile, how to turn
outputs into cloud and shadow probabilities, and the file's sha256.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..bands import ALL_BANDS
from ..decision import RULES, THRESHOLDS
from ..errors import CardError

CARDS_DIR = Path(__file__).resolve().parents[2] / "models"
# Only a source checkout has the developer setup; an installed plugin (the zip) does not.
SETUP_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"
MANAGER = "Raster > Cloud Mask Improver > Manage models…"
# Each scheme is run by the kind of grid that engine.GRID_KINDS names for it (a test keeps the two in step).
SCHEMES = ("mirror-tukey", "centre-crop", "pixel")
# Earlier names of the schemes, still accepted in cards.
SCHEME_ALIASES = {"seed-centre": "centre-crop"}
ACTIVATIONS = ("softmax", "sigmoid", "probabilities")
LEVELS = ("L1C", "L2A")


@dataclass(frozen=True)
class PinnedRelease:
    """One file of one release on the Python package index.

    A model card's ``source`` adds which member of the archive is the model: ``Source``."""

    package: str
    version: str
    filename: str
    sha256: str
    sdist: bool = False


@dataclass(frozen=True)
class Source(PinnedRelease):
    """Where the pinned model comes from (None for models users bring).

    The release, the archive member that is the model, and an optional conversion."""

    member: str = ""
    convert: str = ""


@dataclass(frozen=True)
class ModelCard:
    id: str
    title: str
    licence: str
    credit: str
    level: str
    bands: tuple[str, ...]
    scheme: str
    tile: int
    overlap: float
    activation: str
    cloud_channels: tuple[int, ...]
    shadow_channels: tuple[int, ...]
    cloud_threshold: float | None
    shadow_threshold: float | None
    file: str
    input_name: str = ""
    output_index: int = 0
    channels_out: int = 0
    scale: float = 1e-4
    apply_offset: bool = False
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    resolution: float = 0.0
    decision: str = THRESHOLDS  # how its authors decide a pixel (decision.RULES)
    rank: int = 100
    sha256: str = ""
    description: str = ""
    source: Source | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def is_pixel_model(self) -> bool:
        return self.scheme == "pixel"

    @property
    def has_cloud(self) -> bool:
        return bool(self.cloud_channels)

    @property
    def has_shadow(self) -> bool:
        return bool(self.shadow_channels)

    def facts(self) -> str:
        """One line for tooltips and logs."""
        outputs = " + ".join(n for n, on in (("cloud", self.has_cloud), ("shadow", self.has_shadow)) if on)
        tile = "per pixel" if self.is_pixel_model else f"{self.tile} px tiles"
        return (
            f"{self.title} [{self.id}]: {self.level}, {outputs}, bands {' '.join(self.bands)}, "
            f"{tile}; {self.licence}; {self.credit}"
        )


def _require(data: dict, key: str, where: str):
    if key not in data:
        raise CardError(f"Model card {where} lacks the field '{key}'. Fix or replace the card.")
    return data[key]


def parse_card(data: dict, where: str = "(card)") -> ModelCard:
    """Build a card from its JSON object, checking every field a run depends on."""
    if not isinstance(data, dict):
        raise CardError(f"Model card {where} is not a JSON object.")
    scaling = data.get("scaling", {})
    tiling = _require(data, "tiling", where)
    output = _require(data, "output", where)
    thresholds = data.get("thresholds", {})
    source = data.get("source")
    try:
        card = ModelCard(
            id=str(_require(data, "id", where)),
            title=str(_require(data, "title", where)),
            licence=str(_require(data, "licence", where)),
            credit=str(data.get("credit", "")),
            level=str(_require(data, "level", where)).upper(),
            bands=tuple(_require(data, "bands", where)),
            scheme=SCHEME_ALIASES.get(str(_require(tiling, "scheme", where)), str(tiling["scheme"])),
            tile=int(tiling.get("tile", 256)),
            overlap=float(tiling.get("overlap", 0.0)),
            activation=str(_require(output, "activation", where)),
            cloud_channels=tuple(int(c) for c in output.get("cloud", [])),
            shadow_channels=tuple(int(c) for c in output.get("shadow", [])),
            cloud_threshold=thresholds.get("cloud"),
            shadow_threshold=thresholds.get("shadow"),
            file=str(data.get("file") or f"{data['id']}.onnx"),
            input_name=str(data.get("input_name", "")),
            output_index=int(output.get("index", 0)),
            channels_out=int(output.get("channels", 0)),
            scale=float(scaling.get("factor", 1e-4)),
            apply_offset=bool(scaling.get("apply_offset", False)),
            mean=tuple(float(v) for v in scaling.get("mean", [])),
            std=tuple(float(v) for v in scaling.get("std", [])),
            resolution=float(data.get("resolution", 0) or 0),
            decision=str(data.get("decision") or THRESHOLDS),
            rank=int(data.get("rank", 100)),
            sha256=str(data.get("sha256") or ""),
            description=str(data.get("description", "")),
            source=Source(**source) if source else None,
        )
    except CardError:
        raise  # a missing field, already named
    except (TypeError, ValueError) as err:
        raise CardError(f"Model card {where} has a field of the wrong type: {err}. Fix or replace the card.") from err
    _check(card, where)
    return card


def _check(card: ModelCard, where: str) -> None:
    problems = []
    if card.level not in LEVELS:
        problems.append(f"level '{card.level}' (use L1C or L2A)")
    unknown = [b for b in card.bands if b not in ALL_BANDS]
    if unknown or not card.bands:
        problems.append(f"bands {unknown or '[]'} (use Sentinel-2 names {', '.join(ALL_BANDS)})")
    if card.scheme not in SCHEMES:
        problems.append(f"tiling scheme '{card.scheme}' (use one of {', '.join(SCHEMES)})")
    if card.tile < 1 or not 0 <= card.overlap < 0.5:
        problems.append("tile size / overlap (tile >= 1, overlap in [0, 0.5))")
    elif card.scheme == "mirror-tukey" and 0 < card.tile * card.overlap < 2:
        # The Tukey window is 0 at both ends of a tile: with under 2 px of overlap the
        # pixels where tiles meet would get no weight from any tile, so no probability.
        problems.append(f"overlap {card.overlap:g} of a {card.tile} px tile is under 2 px (use 0, or at least 2 px)")
    if card.activation not in ACTIVATIONS:
        problems.append(f"activation '{card.activation}' (use one of {', '.join(ACTIVATIONS)})")
    if not card.cloud_channels and not card.shadow_channels:
        problems.append("output channels (name a cloud or a shadow channel)")
    if card.mean and (len(card.mean) != len(card.bands) or len(card.std) != len(card.bands)):
        problems.append("mean/std (one value per band)")
    if any(s == 0 for s in card.std):
        problems.append("std (must not be zero)")
    for name, value in (("cloud", card.cloud_threshold), ("shadow", card.shadow_threshold)):
        if value is not None and not 0 <= float(value) <= 1:
            problems.append(f"{name} threshold {value} (must be in 0..1)")
    problems.extend(_decision_problems(card))
    if problems:
        raise CardError(f"Model card {where} is invalid: " + "; ".join(problems) + ".")


def _decision_problems(card: ModelCard) -> list[str]:
    """What is wrong with a card's decision rule (nothing when it is fine).

    Deciding by the most likely class takes it over clear, cloud and shadow, clear being what the
    other two leave: so it needs one softmax of exactly those three classes."""
    if card.decision not in RULES:
        return [f"decision '{card.decision}' (use one of {', '.join(RULES)})"]
    if card.decision == THRESHOLDS:
        return []
    three = (
        card.activation == "softmax"
        and card.channels_out == 3
        and len(card.cloud_channels) == 1
        and len(card.shadow_channels) == 1
        and card.cloud_channels != card.shadow_channels
    )
    needs = "decision by the most likely class (needs a softmax of 3 channels: clear, one cloud and one shadow)"
    return [] if three else [needs]


def load_card(path: Path) -> ModelCard:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CardError(f"Cannot read model card {path}: {err}. Fix or replace the card.") from err
    card = parse_card(data, str(path))
    return replace(card, path=Path(path))


def card_to_json(card: ModelCard) -> dict:
    """The JSON object for a card (used when users import a model)."""
    data = {
        "id": card.id,
        "title": card.title,
        "description": card.description,
        "licence": card.licence,
        "credit": card.credit,
        "level": card.level,
        "bands": list(card.bands),
        "file": card.file,
        "sha256": card.sha256 or None,
        "input_name": card.input_name,
        "rank": card.rank,
        "resolution": card.resolution,
        "decision": card.decision,
        "scaling": {
            "factor": card.scale,
            "apply_offset": card.apply_offset,
            "mean": list(card.mean),
            "std": list(card.std),
        },
        "tiling": {"scheme": card.scheme, "tile": card.tile, "overlap": card.overlap},
        "output": {
            "index": card.output_index,
            "channels": card.channels_out,
            "activation": card.activation,
            "cloud": list(card.cloud_channels),
            "shadow": list(card.shadow_channels),
        },
        "thresholds": {"cloud": card.cloud_threshold, "shadow": card.shadow_threshold},
    }
    if card.source:
        data["source"] = dict(card.source.__dict__)
    return data


def committed_cards() -> list[ModelCard]:
    return [load_card(p) for p in sorted(CARDS_DIR.glob("*.json"))]


def all_cards(models_dir: Path) -> dict[str, ModelCard]:
    """Committed cards plus cards users imported into the models folder, by id.

    A user card that cannot be read is left out (``broken_cards`` says why)
    rather than raised: one bad file in the folder must not stop every other
    model from running.
    """
    cards = {c.id: c for c in committed_cards()}
    for card in _user_cards(models_dir)[0]:
        cards.setdefault(card.id, card)
    return cards


def broken_cards(models_dir: Path) -> dict[str, str]:
    """File name -> problem, for the cards in the models folder that cannot be used."""
    return _user_cards(models_dir)[1]


def _user_cards(models_dir: Path) -> tuple[list[ModelCard], dict[str, str]]:
    good, broken = [], {}
    if models_dir.is_dir():
        for path in sorted(models_dir.glob("*.json")):
            try:
                good.append(load_card(path))
            except CardError as err:
                broken[path.name] = str(err)
    return good, broken


_VERIFIED: dict[tuple[str, int, int], str] = {}


def install_models_hint(action: str = "Install models") -> str:
    """How a user installs models: the plugin's model manager, and 'make setup' only where it exists.

    An installed plugin has no Makefile setup (it is a source checkout's), so naming it there
    would send users looking for something they do not have.
    """
    hint = f"{action} with {MANAGER}"
    if SETUP_SCRIPT.is_file():
        hint += " (in this source checkout, 'make setup' does it too)"
    return hint


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(card: ModelCard, onnx_path: Path) -> None:
    """Check the model file's sha256 against the card (cached by size and mtime)."""
    if not card.sha256:
        return
    stat = onnx_path.stat()
    key = (str(onnx_path), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_of(onnx_path)
    if _VERIFIED[key] != card.sha256:
        raise CardError(
            f"Model file {onnx_path} does not match its card '{card.id}' (sha256 differs): "
            f"the file is damaged or a different model. {install_models_hint('Reinstall the model')}, "
            "or fix the card."
        )
