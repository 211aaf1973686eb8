"""Generative metrics on features: FID, KID, Inception Score and precision/recall.

Every number is computed by torch-fidelity's own feature-level functions (so it equals what
``torch_fidelity.calculate_metrics`` reports for the same features), on features this service
extracts once and caches:

- FID (Heusel et al. 2017): ``metric_fid.fid_features_to_statistics`` and
  ``metric_fid.fid_statistics_to_metric``;
- KID (Bińkowski et al. 2018; unbiased MMD², cubic polynomial kernel, mean ± std over subsets; the paper
  profile's subsets are the reference settings, torch-fidelity's defaults of 100 subsets of 1,000 images):
  ``metric_kid.kid_features_to_metric``;
- IS (Salimans et al. 2016; mean ± std over splits): ``metric_isc.isc_features_to_metric``;
- precision/recall (Kynkäänniemi et al. 2019; k-NN balls): ``metric_prc.prc_features_to_metric``.

Bad input gets a message naming the numbers involved before torch-fidelity's assertions can fire. What the
sample sizes allow — the documented minimums, their warnings, the real-vs-real baseline — is
``sample_size.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.registry import Registry
from skingenbench.services.core.version import installed_versions
from skingenbench.services.evaluation.core.sample_size import single_kid_subset

METRICS = Registry("metric")
LIBRARIES = ("torch", "torch-fidelity", "numpy", "scipy", "scikit-learn", "scikit-image", "timm")


@dataclass
class FIDConfig:
    # Also the real-vs-real value at each synthetic set's N (two disjoint real subsets; core/sample_size.py):
    # one more Fréchet distance per set size, i.e. one more 2048×2048 matrix square root — about as much CPU
    # as the FID itself — so only when asked: option ``fid_real_baseline`` (``domain_fid_real_baseline``).
    real_baseline: bool = False

    def validate(self) -> None:
        if not isinstance(self.real_baseline, bool):
            raise InvalidArgument(f"real_baseline must be true or false, got {self.real_baseline!r}")


@dataclass
class KIDConfig:
    subset_size: int = 1000  # torch-fidelity's default, as in Bińkowski et al.
    subsets: int = 100

    def validate(self) -> None:
        if self.subset_size < 2 or self.subsets < 1:
            raise InvalidArgument(
                f"KID needs subset_size >= 2 and subsets >= 1, got {self.subset_size} and {self.subsets}"
            )


@dataclass
class ISCConfig:
    splits: int = 10

    def validate(self) -> None:
        if self.splits < 1:
            raise InvalidArgument(f"IS splits must be >= 1, got {self.splits}")


@dataclass
class PRCConfig:
    k: int = 3  # the neighbourhood size of Kynkäänniemi et al.

    def validate(self) -> None:
        if self.k < 1:
            raise InvalidArgument(f"precision/recall k must be >= 1, got {self.k}")


def _features(values: torch.Tensor, what: str, minimum: int) -> torch.Tensor:
    if not torch.is_tensor(values) or values.dim() != 2:
        raise InvalidArgument(f"{what}: features must be a 2-D tensor (images × dimensions)")
    if len(values) < minimum:
        raise InvalidArgument(
            f"{what} needs at least {minimum} images, got {len(values)}"
            + (" (the set is empty)" if len(values) == 0 else "")
        )
    return values.detach().cpu().double()  # float64 statistics: FID subtracts large, close numbers


def fid_statistics(features: torch.Tensor) -> dict[str, Any]:
    """Mean and covariance of a set's features (cacheable: a real set's statistics serve every comparison)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(_features(features, "FID", 2))


def frechet_distance(real: torch.Tensor | dict[str, Any], fake: torch.Tensor | dict[str, Any]) -> float:
    """FID between two feature sets (or their ``fid_statistics``)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    stats = [s if isinstance(s, dict) else fid_statistics(s) for s in (real, fake)]
    if stats[0]["mu"].shape != stats[1]["mu"].shape:
        raise InvalidArgument(
            f"FID of features of different widths: {stats[0]['mu'].shape[0]} and {stats[1]['mu'].shape[0]}"
        )
    return float(fid_statistics_to_metric(stats[0], stats[1], verbose=False)[KEY_METRIC_FID])


def kernel_distance(
    real: torch.Tensor, fake: torch.Tensor, subset_size: int = 1000, subsets: int = 100, seed: int = 2020
) -> tuple[float, float]:
    """KID (mean, std over ``subsets`` random subsets of ``subset_size`` images of each set)."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    real, fake = _features(real, "KID (real set)", 2), _features(fake, "KID (synthetic set)", 2)
    for what, count in (("real", len(real)), ("synthetic", len(fake))):
        if count < subset_size:
            raise InvalidArgument(
                f"KID subset size {subset_size} is larger than the {what} set ({count} images)",
                hint=f"set kid_subset_size to at most {min(len(real), len(fake))} or add images",
            )
    out = kid_features_to_metric(
        fake, real, kid_subsets=subsets, kid_subset_size=subset_size, rng_seed=seed, verbose=False
    )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """IS (mean, std over ``splits`` shuffled splits) from unbiased logits."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    logits = _features(logits, "IS", 1)
    if splits > len(logits):
        raise InvalidArgument(
            f"IS with {splits} splits needs at least {splits} images, got {len(logits)}",
            hint=f"set isc_splits to at most {len(logits)}",
        )
    out = isc_features_to_metric(logits, splits, True, seed)
    return float(out[KEY_METRIC_ISC_MEAN]), float(out[KEY_METRIC_ISC_STD])


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float, float]:
    """(precision, recall, F-score): the share of synthetic images inside the real manifold and vice versa."""
    from torch_fidelity.metric_prc import (
        KEY_METRIC_F_SCORE,
        KEY_METRIC_PRECISION,
        KEY_METRIC_RECALL,
        prc_features_to_metric,
    )

    real = _features(real, f"precision/recall with k={k} (real set)", k + 1)
    fake = _features(fake, f"precision/recall with k={k} (synthetic set)", k + 1)
    # torch-fidelity's convention: features_1 is generated, features_2 is real.
    out = prc_features_to_metric(
        fake.float(),
        real.float(),
        prc_neighborhood=k,
        prc_batch_size=10000,
        save_cpu_ram=False,
        verbose=False,
    )
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL]), float(out[KEY_METRIC_F_SCORE])


def library_versions() -> dict[str, str]:
    """Installed versions of ``LIBRARIES``, read from package metadata (nothing is imported)."""
    return installed_versions(LIBRARIES)


# -- the registry: what ListMetrics shows, and the functions the service calls -------------------------
# Each factory takes (config, real, fake, layers, seed): ``real``/``fake`` map feature layers to N×D
# tensors and ``layers`` maps a metric to its layer (the extractor's torch-fidelity default).
def _register(name: str, config_cls: type, tiny: Any, paper: Any, description: str, space: str):
    return METRICS.register(
        name,
        config_cls=config_cls,
        profiles={"tiny": tiny, "paper": paper},
        description=description,
        capabilities={"feature_space": space},
    )


@_register(
    "fid", FIDConfig, FIDConfig(), FIDConfig(), "Fréchet Inception Distance (Heusel et al. 2017)", "extractor"
)
def _fid(config: FIDConfig, real, fake, layers, seed=0) -> dict[str, float]:
    return {"fid": frechet_distance(real[layers["fid"]], fake[layers["fid"]])}


@_register(
    "kid",
    KIDConfig,
    KIDConfig(subset_size=16, subsets=10),
    KIDConfig(),
    "Kernel Inception Distance: unbiased MMD², cubic polynomial kernel (Bińkowski et al. 2018)",
    "extractor",
)
def _kid(config: KIDConfig, real, fake, layers, seed=0) -> dict[str, Any]:
    return _kid_entry("kid", config, real[layers["kid"]], fake[layers["kid"]], seed)


@_register(
    "isc", ISCConfig, ISCConfig(splits=2), ISCConfig(), "Inception Score (Salimans et al. 2016)", "extractor"
)
def _isc(config: ISCConfig, real, fake, layers, seed=0) -> dict[str, float]:
    mean, std = inception_score(fake[layers["isc"]], config.splits, seed)
    return {"isc_mean": mean, "isc_std": std, "isc_splits": config.splits}


@_register(
    "prc",
    PRCConfig,
    PRCConfig(),
    PRCConfig(),
    "Improved precision and recall (Kynkäänniemi et al. 2019)",
    "extractor",
)
def _prc(config: PRCConfig, real, fake, layers, seed=0) -> dict[str, float]:
    precision, recall, f_score = precision_recall(real[layers["prc"]], fake[layers["prc"]], config.k)
    return {"precision": precision, "recall": recall, "f_score": f_score, "prc_k": config.k}


@_register(
    "domain_fid",
    FIDConfig,
    FIDConfig(),
    FIDConfig(),
    "Fréchet distance in a dermoscopy classifier's penultimate-layer features",
    "domain",
)
def _domain_fid(config: FIDConfig, real, fake, layers, seed=0) -> dict[str, float]:
    return {"domain_fid": frechet_distance(real[layers["fid"]], fake[layers["fid"]])}


@_register(
    "domain_kid",
    KIDConfig,
    KIDConfig(subset_size=16, subsets=10),
    KIDConfig(),
    "Kernel distance (KID) in a dermoscopy classifier's penultimate-layer features",
    "domain",
)
def _domain_kid(config: KIDConfig, real, fake, layers, seed=0) -> dict[str, Any]:
    return _kid_entry("domain_kid", config, real[layers["kid"]], fake[layers["kid"]], seed)


def _kid_entry(prefix: str, config: KIDConfig, real, fake, seed: int) -> dict[str, Any]:
    """KID's mean and std over subsets with the settings it used. When both sets have exactly the subset
    size, every subset is the same pair of sets: one subset is computed and the std is None (not a 0 that
    would read as agreement between subsets), with ``<prefix>_single_subset`` saying why."""
    single = single_kid_subset(len(real), len(fake), config.subset_size)
    mean, std = kernel_distance(real, fake, config.subset_size, 1 if single else config.subsets, seed)
    return {
        f"{prefix}_mean": mean,
        f"{prefix}_std": None if single else std,
        f"{prefix}_subset_size": config.subset_size,
        f"{prefix}_subsets": 1 if single else config.subsets,
        f"{prefix}_single_subset": single,
    }


def compute(
    name: str,
    config: Any,
    real: dict[str, torch.Tensor],
    fake: dict[str, torch.Tensor],
    layers: dict[str, str],
    seed: int = 0,
) -> dict[str, Any]:
    """One registered pairwise metric on two feature dictionaries."""
    return METRICS.get(name).factory(config, real, fake, layers, seed)
