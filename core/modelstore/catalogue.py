"""Finding models and the default models for a processing level.

A model is an installed id or a path to an ``.onnx`` with its card."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import ModelNotFound
from ..runtime import home
from .cards import (
    CardError,
    ModelCard,
    all_cards,
    broken_cards,
    committed_cards,
    install_models_hint,
    load_card,
    verify_file,
)


def _install_hint(models_dir: Path) -> str:
    return f"{install_models_hint()} (models folder: {models_dir})."


def resolve(ref: str, models_dir: Path | None = None) -> tuple[ModelCard, Path]:
    """Card and file for an installed model id or a path to an ``.onnx``."""
    models_dir = models_dir or home.models_dir()
    ref = (ref or "").strip()
    if ref.lower().endswith(".onnx") or "/" in ref or "\\" in ref:
        return _from_path(Path(ref).expanduser())
    cards = all_cards(models_dir)
    if ref not in cards:
        broken = broken_cards(models_dir)
        unreadable = f" Cards in {models_dir} that cannot be used: " + "; ".join(broken.values()) if broken else ""
        raise ModelNotFound(
            f"Unknown model '{ref}'. Known model ids: {', '.join(sorted(cards))}. "
            "Or give the path to an .onnx file with its card (.json) beside it." + unreadable
        )
    card = cards[ref]
    path = models_dir / card.file
    if not path.exists():
        raise ModelNotFound(f"Model '{ref}' is not installed (no {path}). " + _install_hint(models_dir))
    verify_file(card, path)
    return card, path


def _from_path(path: Path) -> tuple[ModelCard, Path]:
    if not path.exists():
        raise ModelNotFound(f"Model file '{path}' does not exist. Check the path.")
    beside = path.with_suffix(".json")
    if beside.exists():
        card = load_card(beside)
    else:
        # FarmVibes.AI's own files (cloud_model2_cpu.onnx, shadow.onnx) have committed cards.
        known = [c for c in committed_cards() if c.file == path.name]
        if not known:
            raise CardError(
                f"Model file '{path}' has no card: put a JSON card named {beside.name} "
                "beside it (Manage models… > Import writes one)."
            )
        card = known[0]
    card = replace(card, file=path.name)
    verify_file(card, path)
    return card, path


def installed(models_dir: Path | None = None) -> list[ModelCard]:
    """Cards whose model file is present, best first."""
    models_dir = models_dir or home.models_dir()
    cards = [c for c in all_cards(models_dir).values() if (models_dir / c.file).exists()]
    return sorted(cards, key=lambda c: (c.rank, c.id))


def default_cloud_models(level: str, ensemble: bool, models_dir: Path | None = None) -> list[str]:
    models_dir = models_dir or home.models_dir()
    cards = [c for c in installed(models_dir) if c.has_cloud]
    same_level = [c for c in cards if c.level == level] or cards
    if not same_level:
        raise ModelNotFound("No cloud model is installed. " + _install_hint(models_dir))
    chosen = same_level if ensemble else same_level[:1]
    return [c.id for c in chosen]


def default_shadow_model(level: str, cloud_ids: list[str], models_dir: Path | None = None) -> str | None:
    """Prefer a cloud model that also gives shadow (one network, run once)."""
    models_dir = models_dir or home.models_dir()
    cards = [c for c in installed(models_dir) if c.has_shadow]
    for card in cards:
        if card.id in cloud_ids:
            return card.id
    same_level = [c for c in cards if c.level == level] or cards
    return same_level[0].id if same_level else None
