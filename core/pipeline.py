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

from . import merge as mg
from .inputs import processing_level, radiometric_offset  # noqa: F401 - public: the dialog shows the level
from .plan import (  # noqa: F401 - the requests are this module's public API
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
from .staging import atomic_outputs, stage
from .windowed_merge import FlagRecorder, merge_to_mask


def _targets(probability: ProbabilityPlan, pending: list, tmp: str | None) -> ProbabilityOutputs:
    """Where each computed probability raster is written: a staged final path when the
    caller keeps it, else a file in ``tmp`` (None: not written at all)."""
    kept = probability.outputs
    computed = (bool(probability.cloud_models), bool(probability.shadow_model),
                bool(kept.uncertainty and probability.cloud_models))
    names = ("cloud.tif", "shadow.tif", "uncertainty.tif")
    paths = []
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

    On the raster's own grid the probabilities are flagged for the merge as they are
    computed (``FlagRecorder``), so the merge reads a byte per pixel instead of the
    probabilities, and those not kept are never written. At a processing resolution
    they are warped back first, and the merge reads them from files."""
    feedback = feedback or Feedback()
    with atomic_outputs() as pending, tempfile.TemporaryDirectory(prefix="cloudmask-") as tmp:
        recorder = None if run_plan.probability.resolution else FlagRecorder(run_plan.merge, tmp)
        paths = _targets(run_plan.probability, pending, None if recorder else tmp)
        try:
            report = compute_probabilities(run_plan.probability, paths, Share(feedback, 0.0, 0.9), recorder)
        finally:
            if recorder:
                recorder.close()
        record_thresholds(paths, run_plan.probability)
        mask = stage(pending, run_plan.mask)
        fractions = merge_to_mask(run_plan.merge, paths.cloud, paths.shadow, mask, Share(feedback, 0.9, 1.0),
                                  flags=recorder.path if recorder else None)
    report.notes.extend(run_plan.notes)
    report.fractions = fractions.as_dict()
    report.valid_pixels = fractions.valid
    return report


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
