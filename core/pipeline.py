"""A whole run, from a request to its outputs: plan, probabilities, merge.

This is what the Processing algorithms call; it knows nothing of QGIS. Follow
one run here: :func:`improve` makes the plan (``plan.py``: every input checked
and every choice made), computes the probabilities in one pass over the raster
(``probability.py``, which drives ``engine.py``), merges them with the product
mask into the mask (``windowed_merge.py``, applying ``merge.py``'s rules; the
probabilities are flagged for it as they are computed), and
stages every output so that it appears only when the whole run succeeded
(``staging.py``). :func:`probabilities` and :func:`merge` are the single steps.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace

from . import merge as mg
from .inputs import processing_level, radiometric_offset  # noqa: F401 - public: the dialog shows the level
from .plan import (
    ImproveRequest,
    MergePlan,
    MergeRequest,
    ProbabilityOutputs,
    ProbabilityPlan,
    ProbabilityRequest,
    RunPlan,
    plan,
    plan_merge,
    plan_probabilities,
)
from .probability import (  # noqa: F401
    RunReport,
    compute_probabilities,
    record_thresholds,
    recorded,
    recorded_thresholds,
)
from .progress import Feedback, Share
from .provenance import summary
from .regrid import coarse_info
from .staging import atomic_outputs, stage
from .windowed_merge import FlagRecorder, SourceOutput, merge_to_mask


def _targets(probability: ProbabilityPlan, pending: list, tmp: str | None) -> ProbabilityOutputs:
    """Where each computed probability raster is written: a staged final path when the
    caller keeps it, else a file in ``tmp`` (None: not written at all)."""
    kept = probability.outputs
    computed = (bool(probability.cloud_models), bool(probability.shadow_model),
                bool(kept.uncertainty and probability.cloud_models))
    names = ("cloud.tif", "shadow.tif", "uncertainty.tif")
    paths: list[str | None] = []
    for final, wanted, name in zip(kept.paths(), computed, names):
        if wanted and final:
            paths.append(stage(pending, final))
        elif wanted and tmp:
            paths.append(os.path.join(tmp, name))
        else:
            paths.append(None)
    return ProbabilityOutputs(*paths)


def run(run_plan: RunPlan, feedback: Feedback | None = None) -> RunReport:
    """Carry out an improve plan: probabilities in one pass, then the merge.

    The probabilities are flagged for the merge as they are computed (``FlagRecorder``),
    so the merge reads a byte per pixel instead of the probabilities, and those not kept
    are never written. At a processing resolution the flags are the models' decisions on
    the coarse grid; the merge brings them onto the raster's grid (each pixel the decision
    of the coarse pixel it lies in) and adds the product mask there."""
    feedback = feedback or Feedback()
    with atomic_outputs() as pending, tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        recorder = FlagRecorder(_flag_plan(run_plan), tmp)
        paths = _targets(run_plan.probability, pending, None)
        try:
            report = compute_probabilities(run_plan.probability, paths, Share(feedback, 0.0, 0.9), recorder)
        finally:
            recorder.close()
        record_thresholds(paths, run_plan.probability)
        mask = stage(pending, run_plan.mask)
        source = SourceOutput(stage(pending, run_plan.source)) if run_plan.source else None
        fractions = merge_to_mask(run_plan.merge, paths.cloud, paths.shadow, mask, Share(feedback, 0.9, 1.0),
                                  flags=recorder.path, source=source)
    report.notes.extend(run_plan.notes)
    report.fractions = fractions.as_dict()
    report.valid_pixels = fractions.valid
    if source is not None:
        report.provenance = source.counts.figures()
        report.notes.append(summary(report.provenance))
    return report


def _flag_plan(run_plan: RunPlan) -> MergePlan:
    """Where the models' decisions are recorded: on the raster's grid, with the product mask;
    at a processing resolution on the coarse grid the models ran on, without it."""
    resolution = run_plan.probability.resolution
    if not resolution:
        return run_plan.merge
    return replace(run_plan.merge, grid=coarse_info(run_plan.merge.grid, resolution), product_mask=None)


def improve(request: ImproveRequest, feedback: Feedback | None = None) -> RunReport:
    """FarmVibes.AI's improve_cloud_mask workflow: probabilities, thresholds, merge."""
    return run(plan(request), feedback)


def probabilities(request: ProbabilityRequest, outputs: ProbabilityOutputs,
                  feedback: Feedback | None = None) -> RunReport:
    """Cloud and/or shadow probability rasters, written atomically."""
    probability = plan_probabilities(request, outputs)
    with atomic_outputs() as pending:
        paths = _targets(probability, pending, None)
        report = compute_probabilities(probability, paths, feedback)
        record_thresholds(paths, probability)
        return report


def merge(request: MergeRequest, mask: str, feedback: Feedback | None = None) -> mg.Fractions:
    """The merge op on its own, written atomically."""
    merge_plan = plan_merge(request, mask)
    with atomic_outputs() as pending:
        return merge_to_mask(merge_plan, request.cloud_probability, request.shadow_probability,
                             stage(pending, mask), feedback)
