"""A whole run, from a request to its outputs: plan, probabilities, merge.

This is what the Processing algorithms call; it knows nothing of QGIS. Follow
one run here: :func:`improve` makes the plan (``plan.py``: every input checked
and every choice made), computes the probabilities in one pass over the raster
(``probability.py``, which drives ``engine.py``), merges them with the product
mask into the mask (``windowed_merge.py``, applying ``merge.py``'s rules; the
probabilities are flagged for it as they are computed), and
stages every output so that it appears only when the whole run succeeded
(``staging.py``). A run limited to an area takes the same way, over the cut-out
of the raster the area needs (``area.py``). Each step returns what it found and
the run's :class:`RunReport` is built once, here, at the end.
:func:`probabilities` and :func:`merge` are the single steps.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any

from . import area
from . import merge as merge_rules
from .inputs import processing_level, radiometric_offset  # noqa: F401 - public: the dialog shows the level
from .modelstore.cards import ModelCard
from .plan import (
    ImproveRequest,
    MergeRequest,
    ProbabilityOutputs,
    ProbabilityPlan,
    ProbabilityRequest,
    RunPlan,
    plan,
    plan_merge,
    plan_probabilities,
)
from .probability import (  # noqa: F401 - public: the merge algorithm reads what a probability run recorded
    compute_probabilities,
    recorded,
    recorded_thresholds,
)
from .progress import Feedback, Share
from .provenance import summary
from .regrid import coarse_info
from .staging import atomic_outputs, stage
from .windowed_merge import FlagRecorder, MergePlan, SourceOutput, merge_to_mask


@dataclass(frozen=True)
class RunReport:
    """What a run did, for the caller to show: built once, by the pipeline, when the run is done.

    Each step returns its part (the probability step its notes, the merge its fractions and
    SOURCE figures, an area its own counts) and nothing changes the report afterwards."""

    fractions: dict[str, float] = field(default_factory=dict)
    valid_pixels: int = 0
    notes: tuple[str, ...] = ()
    cloud_models: tuple[str, ...] = ()
    shadow_model: str | None = None
    # The cards the run used, by id: a model given as a path has no installed id to look up again.
    cards: dict[str, ModelCard] = field(default_factory=dict)
    # With a SOURCE output: what the product mask, the models and the dilation each flag
    # (provenance.FIGURES, fractions of valid pixels).
    provenance: dict[str, float] = field(default_factory=dict)


def _report(
    probability: ProbabilityPlan,
    notes: tuple[str, ...],
    fractions: merge_rules.Fractions | None = None,
    figures: dict[str, float] | None = None,
    last: tuple[str, ...] = (),
) -> RunReport:
    """The report of a run of ``probability``'s models: its notes, the SOURCE figures' summary, ``last``."""
    notes = (*notes, *([summary(figures)] if figures is not None else []), *last)
    counted: dict[str, Any] = {"fractions": fractions.as_dict(), "valid_pixels": fractions.valid} if fractions else {}
    return RunReport(
        notes=notes,
        cloud_models=tuple(probability.cloud_models),
        shadow_model=probability.shadow_model,
        cards=probability.cards,
        provenance=figures or {},
        **counted,
    )


def _targets(probability: ProbabilityPlan, pending: list, tmp: str | None) -> ProbabilityOutputs:
    """Where each computed probability raster is written.

    A staged final path when the caller keeps it, else a file in ``tmp`` (None: not written at all)."""
    kept = probability.outputs
    computed = probability.computed
    names = [f"{name}.tif" for name in kept.as_dict()]
    paths: list[str | None] = []
    for final, wanted, name in zip(kept.paths(), computed, names):
        if wanted and final:
            paths.append(stage(pending, final))
        elif wanted and tmp:
            paths.append(os.path.join(tmp, name))
        else:
            paths.append(None)
    return ProbabilityOutputs(*paths)


def run(run_plan: RunPlan, feedback: Feedback | None = None, selection: area.Selection | None = None) -> RunReport:
    """Carry out an improve plan: probabilities in one pass, then the merge.

    With a ``selection``, over only the part of the raster it needs (:func:`_run_in_area`).

    The probabilities are flagged for the merge as they are computed (``FlagRecorder``),
    so the merge reads a byte per pixel instead of the probabilities, and those not kept
    are never written. At a processing resolution the flags are the models' decisions on
    the coarse grid; the merge brings them onto the raster's grid (each pixel the decision
    of the coarse pixel it lies in) and adds the product mask there."""
    feedback = feedback or Feedback()
    if selection is not None:
        return _run_in_area(run_plan, feedback, selection)
    with atomic_outputs() as pending:
        done = _steps(run_plan, feedback, pending)
    return _report(run_plan.probability, (*done.notes, *run_plan.notes), done.fractions, done.figures)


def _run_in_area(run_plan: RunPlan, feedback: Feedback, selection: area.Selection) -> RunReport:
    """The plan run over the cut-out of the raster the selection needs (``area.AreaRun``).

    Its outputs are cut to the selection's box: the same pixels there as a whole-scene run.
    The report counts the box (or the polygons), not the cut-out."""
    with tempfile.TemporaryDirectory(prefix="cloudmask-area-") as tmp, atomic_outputs() as pending:
        part = area.AreaRun.of(run_plan, selection, tmp)
        with atomic_outputs() as part_pending:
            done = _steps(part.plan, feedback, part_pending)
        counted = part.finish({key: stage(pending, final) for key, final in part.finals.items()})
    return _report(
        run_plan.probability, (*done.notes, *run_plan.notes), counted.fractions, counted.figures, (counted.note,)
    )


@dataclass(frozen=True)
class _Done:
    """What the steps of a run found.

    The probability step's notes, the mask's fractions, and the SOURCE figures (None without that output)."""

    notes: tuple[str, ...]
    fractions: merge_rules.Fractions
    figures: dict[str, float] | None


def _steps(run_plan: RunPlan, feedback: Feedback, pending: list) -> _Done:
    """The probabilities, flagged as they are computed, then the merge; outputs staged in ``pending``."""
    with tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        paths = _targets(run_plan.probability, pending, None)
        mask = stage(pending, run_plan.mask)
        source = SourceOutput(stage(pending, run_plan.source)) if run_plan.source else None
        recorder = FlagRecorder(_flag_plan(run_plan), tmp)
        try:
            notes = compute_probabilities(run_plan.probability, paths, Share(feedback, 0.0, 0.9), recorder)
        finally:
            recorder.close()
        fractions = merge_to_mask(
            run_plan.merge,
            paths.cloud,
            paths.shadow,
            mask,
            Share(feedback, 0.9, 1.0),
            flags=recorder.path,
            source=source,
        )
    return _Done(notes, fractions, source.counts.figures() if source is not None else None)


def _flag_plan(run_plan: RunPlan) -> MergePlan:
    """Where the models' decisions are recorded.

    On the raster's grid, with the product mask; at a processing resolution on the coarse
    grid the models ran on, without it."""
    resolution = run_plan.probability.resolution
    if not resolution:
        return run_plan.merge
    return replace(run_plan.merge, grid=coarse_info(run_plan.merge.grid, resolution), product_mask=None)


def improve(
    request: ImproveRequest, feedback: Feedback | None = None, selection: area.Selection | None = None
) -> RunReport:
    """FarmVibes.AI's improve_cloud_mask workflow: probabilities, thresholds, merge.

    With a ``selection``, only its pixels (the same as a whole-scene run's there)."""
    return run(plan(request), feedback, selection)


def probabilities(
    request: ProbabilityRequest, outputs: ProbabilityOutputs, feedback: Feedback | None = None
) -> RunReport:
    """Cloud and/or shadow probability rasters, written atomically."""
    probability = plan_probabilities(request, outputs)
    with atomic_outputs() as pending:
        notes = compute_probabilities(probability, _targets(probability, pending, None), feedback)
    return _report(probability, notes)


def merge(request: MergeRequest, mask: str, feedback: Feedback | None = None) -> merge_rules.Fractions:
    """The merge op on its own, written atomically."""
    merge_plan = plan_merge(request, mask)
    with atomic_outputs() as pending:
        return merge_to_mask(
            merge_plan, request.cloud_probability, request.shadow_probability, stage(pending, mask), feedback
        )
