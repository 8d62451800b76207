"""How a pixel is decided cloud, shadow or clear: by thresholds, or by the most likely class.

Models' authors decide in one of two ways, and a model card says which
(``"decision"``). FarmVibes.AI thresholds each probability on its own (cloud if its
probability is over the cloud threshold, shadow likewise). ukis-csmask takes the most
likely of clear, cloud and shadow: a pixel with cloud 0.45, shadow 0.25 and clear 0.30
is cloud there, and would be clear at a 0.5 threshold. The rule here is the single
place that turns what the user gave and what the cards recommend into the decision a
run uses: the improve plan, the merge on its own and the dialog's preview all call
:func:`decide`, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

THRESHOLDS = "thresholds"
MOST_LIKELY_CLASS = "most-likely-class"
RULES = (THRESHOLDS, MOST_LIKELY_CLASS)

# FarmVibes.AI's merge_cloud_masks_simple defaults: the last resort when no card recommends a value.
FARMVIBES_CLOUD_THRESHOLD = 0.3
FARMVIBES_SHADOW_THRESHOLD = 0.2


@dataclass(frozen=True)
class Recommended:
    """What the models of a run recommend (None: nothing)."""

    cloud_threshold: float | None = None
    shadow_threshold: float | None = None
    most_likely_class: bool = False  # the cloud and the shadow come from one network that decides so


@dataclass(frozen=True)
class Decision:
    """The rule a run applies: thresholds, or the most likely class.

    With the most likely class the thresholds are not used, but kept for the record and for a
    later change of mind."""

    cloud_threshold: float
    shadow_threshold: float
    most_likely_class: bool = False

    def note(self) -> str:
        """One sentence for the log."""
        if self.most_likely_class:
            return (
                "Decision: the most likely class of clear, cloud and shadow, as the model's "
                "authors decide (set a threshold to use thresholds instead)."
            )
        return f"Thresholds: cloud {self.cloud_threshold:g}, shadow {self.shadow_threshold:g}."


def recommended(cloud_cards: Sequence, shadow_card) -> Recommended:
    """The cards' recommended thresholds and rule.

    The mean of the cloud models' cloud thresholds (an
    ensemble), the shadow model's shadow threshold, and the most likely class where one
    network gives both cloud and shadow and its card decides by it. (Cards are
    ``modelstore.cards.ModelCard``; any object with their fields will do.)"""
    values = [c.cloud_threshold for c in cloud_cards if c.cloud_threshold is not None]
    cloud = sum(values) / len(values) if values else None
    shadow = shadow_card.shadow_threshold if shadow_card is not None else None
    one_network = shadow_card is not None and len(cloud_cards) == 1 and cloud_cards[0].id == shadow_card.id
    most_likely = one_network and getattr(shadow_card, "decision", THRESHOLDS) == MOST_LIKELY_CLASS
    return Recommended(cloud, shadow, most_likely)


def decide(cloud_threshold: float | None, shadow_threshold: float | None, models: Recommended) -> Decision:
    """Given thresholds, else the models' rule and recommended values, else FarmVibes.AI's defaults.

    Any threshold the user sets means thresholds for both classes (the other
    one the recommended value): a threshold is a request to decide by thresholds, and a
    mix of rules per class would be hard to explain."""
    given = cloud_threshold is not None or shadow_threshold is not None
    cloud = next(v for v in (cloud_threshold, models.cloud_threshold, FARMVIBES_CLOUD_THRESHOLD) if v is not None)
    shadow = next(v for v in (shadow_threshold, models.shadow_threshold, FARMVIBES_SHADOW_THRESHOLD) if v is not None)
    return Decision(float(cloud), float(shadow), models.most_likely_class and not given)
