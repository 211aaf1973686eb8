"""Sample sizes of the generative metrics: the documented minimums, the warnings below them, and the
real-vs-real baseline at the synthetic sets' size.

FID and IS are biased estimators whose expected value depends on the number of images N (Chong & Forsyth
2020, "Effectively Unbiased FID and Inception Score and where to find them", CVPR: the bias is close to
linear in 1/N and depends on the generator), so two values compare only at the same N, and a value compares
with the reference study's published ones (SkinGenBench, arXiv 2512.17585: 5,000 images per generator, seeds
0–4999) only at 5,000. The minimums below which a metric warns (or, with the ``strict_sample_size`` option,
is refused with FAILED_PRECONDITION):

- FID (and domain FID): at least as many images in each set as the features have dimensions (2,048 for
  Inception pool3). Below that the covariance estimate is singular (rank at most N − 1) and the bias is
  large; FID's authors require N above the dimension and recommend 10,000 (Heusel et al. 2017, the
  bioinf-jku/TTUR README).
- IS: the reference protocol's 5,000 images (IS at fewer images is biased differently, Chong & Forsyth 2020).
- KID: unbiased at any N (Bińkowski et al. 2018), but its settings decide its spread: the reference ones are
  torch-fidelity's defaults, 100 subsets of 1,000 images; smaller subsets warn, and when both sets have exactly
  the subset size only one subset exists, so no std over subsets is reported (it would be 0 by construction).

The real-vs-real baseline — what sampling alone gives — is the FID between two disjoint random subsets of
the real set of the synthetic set's size N (not N/2 per half): the bias depends on N, so only a baseline at the
same N says how far a synthetic set's FID is from "as close as real data gets". With fewer than 2N real
images, it is drawn at the largest size possible and says so. It costs one more Fréchet distance (a matrix
square root of the feature width) per synthetic set size, as much as the FID itself, so it is computed only
when asked: options ``fid_real_baseline`` and ``domain_fid_real_baseline`` (true/false, default false).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

REFERENCE_IMAGES = 5_000  # per generator, seeds 0–4999 (SkinGenBench protocol)
IS_MINIMUM_IMAGES = REFERENCE_IMAGES
KID_REFERENCE_SUBSET_SIZE = 1_000  # torch-fidelity's defaults, as in Bińkowski et al. 2018
KID_REFERENCE_SUBSETS = 100
# Width of the FID features of the extractors this service registers (torch-fidelity's default layers), known
# before any feature is extracted so a strict request is refused at Start. Others are checked after extraction.
FEATURE_DIMENSIONS = {
    "inception-v3-compat": 2048,  # pool3
    "vgg16": 4096,  # fc2
    "clip-vit-b-32": 512,
    "clip-vit-b-16": 512,
    "clip-rn50": 1024,
}
FID_METRICS = {"fid": "extractor", "domain_fid": "domain"}  # metric -> feature space
KID_METRICS = {"kid": "extractor", "domain_kid": "domain"}
CITATION = "Chong & Forsyth 2020"


@dataclass(frozen=True)
class SampleSizeWarning:
    metric: str
    set: str  # "real", a synthetic set's name, or "" for a metric's settings
    count: int
    minimum: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "set": self.set,
            "count": self.count,
            "minimum": self.minimum,
            "message": self.message,
        }


def single_kid_subset(real_count: int, fake_count: int, subset_size: int) -> bool:
    """True when every KID subset is the same pair of sets (both sets have exactly ``subset_size`` images):
    the unbiased MMD² does not depend on order, so all subsets give one value and their std is 0 by
    construction, which says nothing about the estimate's spread."""
    return real_count == subset_size and fake_count == subset_size


def sample_size_warnings(
    metrics: list[str] | tuple[str, ...],
    counts: dict[str, int],
    dimensions: dict[str, int | None],
    configs: dict[str, Any],
) -> list[SampleSizeWarning]:
    """The warnings of a set of metrics on sets of ``counts`` images (the real set first, as ``"real"``).

    ``dimensions`` maps a feature space (``"extractor"``, ``"domain"``) to its FID feature width, None when
    not known yet (the FID checks of that space are then left for when it is); ``configs`` are the metrics'
    configs (KID's subset settings, IS's splits).
    """
    out: list[SampleSizeWarning] = []
    synthetic = {name: n for name, n in counts.items() if name != "real"}
    for metric, space in FID_METRICS.items():
        width = dimensions.get(space)
        if metric not in metrics or not width:
            continue
        for name, count in counts.items():
            if count < width:
                what = "the real set" if name == "real" else f"synthetic set {name!r}"
                out.append(
                    SampleSizeWarning(
                        metric,
                        name,
                        count,
                        width,
                        f"{metric}: {what} has {count:,} images, fewer than the {width:,} feature dimensions: "
                        f"its covariance is singular (rank at most {max(count - 1, 0):,}) and the FID is biased "
                        f"upward, by more the smaller N ({CITATION}); compare only with FIDs at the same N "
                        f"(the reference study used {REFERENCE_IMAGES:,} synthetic images per generator)",
                    )
                )
    for metric in KID_METRICS:
        config = configs.get(metric)
        if metric not in metrics or config is None:
            continue
        if config.subset_size < KID_REFERENCE_SUBSET_SIZE or config.subsets < KID_REFERENCE_SUBSETS:
            out.append(
                SampleSizeWarning(
                    metric,
                    "",
                    config.subset_size,
                    KID_REFERENCE_SUBSET_SIZE,
                    f"{metric}: {config.subsets} subsets of {config.subset_size:,} images, not the reference "
                    f"{KID_REFERENCE_SUBSETS} subsets of {KID_REFERENCE_SUBSET_SIZE:,} (Bińkowski et al. 2018; "
                    "torch-fidelity's defaults): not comparable with KIDs at the reference settings",
                )
            )
        for name, count in synthetic.items():
            if single_kid_subset(counts["real"], count, config.subset_size):
                out.append(
                    SampleSizeWarning(
                        metric,
                        name,
                        count,
                        config.subset_size + 1,
                        f"{metric}: synthetic set {name!r} and the real set both have exactly the subset size "
                        f"({count:,} images): only one subset is possible, so no std over subsets is reported",
                    )
                )
    isc = configs.get("isc")
    if "isc" in metrics and isc is not None:
        for name, count in counts.items():
            if count < IS_MINIMUM_IMAGES:
                what = "the real set" if name == "real" else f"synthetic set {name!r}"
                out.append(
                    SampleSizeWarning(
                        "isc",
                        name,
                        count,
                        IS_MINIMUM_IMAGES,
                        f"isc: {what} has {count:,} images, fewer than the reference protocol's "
                        f"{IS_MINIMUM_IMAGES:,}: the Inception Score depends on N ({CITATION}); compare only at "
                        "the same N",
                    )
                )
    return out


def sample_sizes(
    metrics: list[str] | tuple[str, ...],
    counts: dict[str, int],
    dimensions: dict[str, int | None],
    configs: dict[str, Any],
) -> dict[str, Any]:
    """What the report records about the sample sizes: the counts, each metric's settings and the minimums."""
    record: dict[str, Any] = {"counts": dict(counts), "reference_images": REFERENCE_IMAGES, "metrics": {}}
    for metric, space in FID_METRICS.items():
        if metric in metrics:
            record["metrics"][metric] = {
                "feature_dimensions": dimensions.get(space),
                "minimum": dimensions.get(space),
            }
    for metric in KID_METRICS:
        if metric in metrics and metric in configs:
            config = configs[metric]
            record["metrics"][metric] = {
                "subset_size": config.subset_size,
                "subsets": config.subsets,
                "reference_subset_size": KID_REFERENCE_SUBSET_SIZE,
                "reference_subsets": KID_REFERENCE_SUBSETS,
            }
    if "isc" in metrics and "isc" in configs:
        record["metrics"]["isc"] = {"splits": configs["isc"].splits, "minimum": IS_MINIMUM_IMAGES}
    return record


def real_baseline_subsets(real_count: int, target: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random subsets of the real set's indices, of ``target`` images each when the real set has
    at least 2 × target, else of ``real_count // 2`` each (the caller reports the size it got)."""
    size = min(target, real_count // 2)
    order = np.random.default_rng(seed).permutation(real_count)
    return order[:size], order[size : 2 * size]


def baseline_note(metric: str, size: int, target: int, real_count: int) -> str:
    return (
        f"{metric}: the real-vs-real baseline is at N = {size:,}, below the synthetic sets' {target:,}: the real "
        f"set has {real_count:,} images and two disjoint subsets of {target:,} need {2 * target:,}; FID's bias "
        "grows as N shrinks, so the baseline is higher than it would be at the synthetic sets' N"
    )
