"""Feature extractors for generative metrics, registered by name (DESIGN.md, rule 5).

Two kinds of feature space:

- torch-fidelity's networks (``inception-v3-compat``, the FID standard of Heusel et al. 2017;
  ``vgg16``; CLIP), built by ``torch_fidelity.utils.create_feature_extractor`` and run by its own
  ``get_featuresdict_from_dataset`` loop, so features equal what ``torch_fidelity.calculate_metrics``
  computes. Weights come only from a local file (DESIGN.md, rule 8), hashed and checked before use;
  offline without the file, the error names it and where to put it.
- ``domain``: the penultimate layer (and logits) of a dermoscopy classifier trained on the real
  training split. ImageNet Inception features say little about skin; a diagnostic model's features
  are closer to what matters clinically and exist offline.

Images go in as uint8 RGB ``H×W×3`` arrays of any size; each network resizes to its own input
(torch-fidelity: TensorFlow-1.x-compatible bilinear). Images of different sizes are batched by size,
never squashed to one size first, so each is resized exactly once.

Over 400 lines on purpose: the registry, the shared ``Extractor`` (batching, dtype, device, provenance)
and its two families (torch-fidelity's networks, the domain space of a trained classifier) are read
together when a metric's numbers are questioned; the families are short once the base is shared.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skingenbench.services.core.errors import DataIntegrityError, FailedPrecondition, InvalidArgument
from skingenbench.services.core.registry import Registry
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

FEATURE_EXTRACTORS = Registry("feature_extractor")
WEIGHTS_DIR_ENV = "SKINGENBENCH_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = "~/.cache/skingenbench/weights"
TORCH_FIDELITY_RESIZE = (
    "torch-fidelity interpolate_bilinear_2d_like_tensorflow1x (from each image's own size)"
)
METRIC_LAYERS = ("fid", "kid", "prc", "isc")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class UpstreamWeights:
    """The file torch-fidelity (or torchvision) downloads for a network, and how to recognise it."""

    file: str
    url: str
    sha256: str = ""  # full hash where upstream publishes it
    sha256_prefix: str = ""  # torch.hub's convention: the file name carries the hash's first hex digits
    format: str = "state_dict"  # or "torchscript" (CLIP's archives)
    input_size: int = 299

    def matches(self, digest: str) -> bool:
        return (
            digest == self.sha256
            if self.sha256
            else bool(self.sha256_prefix) and digest.startswith(self.sha256_prefix)
        )


def _upstream() -> dict[str, UpstreamWeights]:
    from torch_fidelity.feature_extractor_clip import MODEL_METADATA, MODEL_URLS
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    table = {
        "inception-v3-compat": UpstreamWeights(
            URL_INCEPTION_V3.rsplit("/", 1)[1], URL_INCEPTION_V3, sha256_prefix="6726825d"
        ),
        "vgg16": UpstreamWeights(
            "vgg16-397923af.pth",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            sha256_prefix="397923af",
            input_size=224,
        ),
    }
    # DINOv2 is left out: torch-fidelity 0.4 refuses a local weights path for it (NotImplementedError).
    for name in ("clip-vit-b-32", "clip-vit-b-16", "clip-rn50"):
        digest = MODEL_METADATA[name]["hash"]
        table[name] = UpstreamWeights(
            f"{name}-{digest}.pt", MODEL_URLS[name], sha256=digest, format="torchscript", input_size=224
        )
    return table


UPSTREAM = _upstream()


def weights_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR).expanduser()


def default_weights_path(name: str) -> Path:
    return weights_dir() / UPSTREAM[name].file


def missing_weights_error(name: str, looked_at: Path) -> FailedPrecondition:
    spec = UPSTREAM[name]
    digest = spec.sha256 or f"{spec.sha256_prefix}…"
    return FailedPrecondition(
        f"feature extractor {name!r} needs the weights file {spec.file}, which is not at {looked_at}; "
        "nothing is downloaded at run time",
        hint=f"download {spec.url} (sha256 {digest}) and put it at {default_weights_path(name)} "
        f"(or set ${WEIGHTS_DIR_ENV} to the folder holding {spec.file}, or pass extractor_weights); "
        f"torch-fidelity keeps the same file as ~/.cache/torch/hub/checkpoints/{spec.file} once it ran online",
        file=spec.file,
        path=str(default_weights_path(name)),
    )


@dataclass
class ExtractorConfig:
    batch_size: int = 64
    internal_dtype: str = "float32"  # torch-fidelity's option; float64 for bit-level comparisons
    weights_sha256: str = ""  # expected hash of the weights file; empty: recorded, not enforced

    def validate(self) -> None:
        if self.batch_size < 1:
            raise InvalidArgument(f"batch_size must be >= 1, got {self.batch_size}")
        if self.internal_dtype not in ("float32", "float64"):
            raise InvalidArgument(f"internal_dtype must be float32 or float64, got {self.internal_dtype!r}")
        if self.weights_sha256 and len(self.weights_sha256) != 64:
            raise InvalidArgument("weights_sha256 must be 64 hex digits")


class UInt8Images(Dataset):
    """What torch-fidelity's extraction loop takes: a Dataset of uint8 ``3×H×W`` tensors."""

    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        # A writable copy: decoded images may be read-only views, which torch warns about.
        return torch.from_numpy(np.array(as_rgb_uint8(self.images[index]), copy=True)).permute(2, 0, 1)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InvalidArgument(f"images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InvalidArgument(f"images must be H×W×3 RGB, got shape {image.shape}")
    return image[:, :, :3]


def batches_by_size(images: Sequence[np.ndarray], batch_size: int):
    """Consecutive chunks of ``batch_size`` images, each split into groups of one image size: yields
    ``(start, [(indices, images), ...])``. Each image is read once: a set that decodes on access (the
    evaluation's ``ImageSet`` keeps only its last 64) would otherwise decode a batch larger than its cache
    twice, once for the sizes and once for the network."""
    for start in range(0, len(images), batch_size):
        groups: dict[tuple[int, int], tuple[list[int], list[np.ndarray]]] = {}
        for index in range(start, min(start + batch_size, len(images))):
            image = images[index]
            indices, members = groups.setdefault(tuple(np.shape(image)[:2]), ([], []))
            indices.append(index)
            members.append(image)
        yield start, list(groups.values())


@dataclass
class Extractor:
    """A loaded feature extractor with everything a result must record about it."""

    name: str
    module: Any  # a torch_fidelity FeatureExtractorBase
    layers: dict[str, str]  # metric -> feature layer (torch-fidelity's defaults)
    weights_sha256: str
    weights_source: str  # file name, or "classifier checkpoint"
    weights_upstream: bool  # the published weights (numbers comparable with the literature)
    input_size: int
    resize: str
    device: str = "cpu"
    batch_size: int = 64
    extra: dict[str, Any] = field(default_factory=dict)
    images_extracted: int = 0  # counts real work (the feature cache's tests read it)

    @property
    def features(self) -> list[str]:
        return list(self.module.get_requested_features_list())

    def preprocessing(self) -> dict[str, Any]:
        """What, besides the weights, decides the features: part of the feature cache's key."""
        import torch_fidelity

        return {
            "decode": "RGB uint8",
            "resize": self.resize,
            "input_size": self.input_size,
            "features": self.features,
            "dtype": str(getattr(self.module, "feature_extractor_internal_dtype", torch.float32)),
            "torch_fidelity": torch_fidelity.__version__,
            **self.extra.get("preprocessing", {}),
        }

    def extract(
        self,
        images: Sequence[np.ndarray],
        progress: Progress | None = None,
        check: Callable[[], None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Features of every image, in order, as ``{layer: float32 N×D}`` on the CPU, plus ``image_hw``
        (each image's height and width as given: what the network resized from)."""
        from torch_fidelity.utils import get_featuresdict_from_dataset

        if len(images) == 0:
            raise InvalidArgument("cannot extract features of an empty image set")
        out: dict[str, torch.Tensor] = {"image_hw": torch.zeros((len(images), 2), dtype=torch.int64)}
        cuda = self.device.startswith("cuda")
        for start, groups in batches_by_size(images, self.batch_size):
            if check is not None:
                check()
            for indices, members in groups:
                batch = UInt8Images(members)
                out["image_hw"][torch.as_tensor(indices)] = torch.tensor(np.shape(batch.images[0])[:2])
                features = get_featuresdict_from_dataset(batch, self.module, len(indices), cuda, True, False)
                for layer, values in features.items():
                    if layer not in out:
                        out[layer] = torch.empty((len(images), values.shape[1]), dtype=torch.float32)
                    out[layer][torch.as_tensor(indices)] = values.float()
                self.images_extracted += len(indices)
            if progress is not None:
                progress(min(start + self.batch_size, len(images)), len(images))
        return out

    def provenance(self) -> dict[str, Any]:
        return {
            "extractor": self.name,
            "weights_sha256": self.weights_sha256,
            "weights_file": self.weights_source,
            "weights_upstream": self.weights_upstream,
            "layers": dict(self.layers),
            "input_size": self.input_size,
            "resize": self.resize,
            "device": self.device,
            **self.extra.get("provenance", {}),
        }


def read_weights(name: str, weights: bytes | str | os.PathLike | None) -> tuple[bytes, str]:
    """(bytes, where they came from): the given bytes or file, else the default location."""
    if isinstance(weights, (bytes, bytearray)):
        return bytes(weights), "given bytes"
    path = Path(weights).expanduser() if weights else default_weights_path(name)
    if not path.is_file():
        raise missing_weights_error(name, path)
    return path.read_bytes(), path.name


def _check_plain_state_dict(data: bytes, source: str) -> None:
    """Unpickle once with ``weights_only=True`` (DESIGN.md, rule 7): torch-fidelity itself loads with
    ``weights_only=False``, which is safe only for bytes that passed this check."""
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means: not a plain tensor file
        raise InvalidArgument(
            f"weights file {source} is not a plain tensor state dict: {str(exc)[:200]}",
            hint="give the .pth torch-fidelity downloads, not a pickled module",
        ) from None


def create_torch_fidelity_extractor(
    name: str, config: ExtractorConfig, weights: bytes | str | os.PathLike | None = None, device: str = "cpu"
) -> Extractor:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor

    spec = UPSTREAM[name]
    data, source = read_weights(name, weights)
    digest = hashlib.sha256(data).hexdigest()
    if config.weights_sha256 and digest != config.weights_sha256:
        raise DataIntegrityError(
            f"weights file {source} has sha256 {digest[:12]}…, expected {config.weights_sha256[:12]}…",
            hint="the file changed or is another file",
        )
    if spec.format == "state_dict":
        _check_plain_state_dict(data, source)
    cls = FEATURE_EXTRACTORS_REGISTRY[name]
    layers = {metric: cls.get_default_feature_layer_for_metric(metric) for metric in METRIC_LAYERS}
    requested = list(dict.fromkeys(layers.values()))
    try:
        module = create_feature_extractor(
            name,
            requested,
            cuda=False,
            verbose=False,
            feature_extractor_weights_path=io.BytesIO(data),
            feature_extractor_internal_dtype=config.internal_dtype,
        )
    except RuntimeError as exc:  # load_state_dict: missing/unexpected keys or shapes
        raise InvalidArgument(f"weights file {source} does not fit {name}: {str(exc)[:300]}") from None
    # channels_last on every device: CUDA's convolutions and the CPU's (oneDNN) are faster in it; measured on
    # 2 CPU cores, Inception on 16 images at 299 px took 5.3 instead of 7.3 CPU s, features equal to 1.2e-6
    # (float32 summation order). No autocast: metrics want float32 features.
    module = module.to(device).to(memory_format=torch.channels_last)
    return Extractor(
        name,
        module,
        layers,
        digest,
        source,
        spec.matches(digest),
        spec.input_size,
        f"{TORCH_FIDELITY_RESIZE} to {spec.input_size}×{spec.input_size}",
        device,
        config.batch_size,
        # The layout changes float32 summation order (features differ by ~1e-6): features cached from the
        # default layout are not reused.
        {"preprocessing": {"memory_format": "channels_last"}},
    )


def _weights_requirement(name: str) -> list[dict[str, Any]]:
    path = default_weights_path(name)
    return [
        {
            "name": UPSTREAM[name].file,
            "description": f"{name} weights ({UPSTREAM[name].url})",
            "available": path.is_file(),
            "hint": f"put {UPSTREAM[name].file} at {path} (or set ${WEIGHTS_DIR_ENV}), or pass extractor_weights",
        }
    ]


_PROFILES = {"tiny": ExtractorConfig(batch_size=16), "paper": ExtractorConfig(batch_size=64)}
_DESCRIPTIONS = {
    "inception-v3-compat": "InceptionV3 as in TF-FID (torch-fidelity): pool 2048-d for FID/KID/PRC, unbiased "
    "logits for IS; the standard of Heusel et al. 2017",
    "vgg16": "VGG-16 fc2 features (torch-fidelity), as used for precision/recall by Kynkäänniemi et al. 2019",
}


def _register_torch_fidelity(name: str) -> None:
    @FEATURE_EXTRACTORS.register(
        name,
        config_cls=ExtractorConfig,
        profiles=_PROFILES,
        description=_DESCRIPTIONS.get(name, f"{name} image embedding (torch-fidelity)"),
        capabilities={
            "source": "torch-fidelity",
            "input_size": str(UPSTREAM[name].input_size),
            "inception_score": str(name == "inception-v3-compat").lower(),
            "weights_file": UPSTREAM[name].file,
        },
        requirements=lambda: _weights_requirement(name),
    )
    def factory(config: ExtractorConfig, weights=None, device: str = "cpu") -> Extractor:
        return create_torch_fidelity_extractor(name, config, weights, device)


for _name in UPSTREAM:
    _register_torch_fidelity(_name)


# -- the domain feature space: a dermoscopy classifier's penultimate layer -------------------------------
@dataclass(frozen=True)
class ClassifierPreprocess:
    """The classification service's evaluation transform, on uint8 batches: torchvision ``resize`` of the
    shorter side (bilinear, antialiased, on uint8 as there), ``center_crop``, then /255 and normalise
    (ImageNet statistics by default), so domain features are those the classifier sees when it predicts."""

    resize_size: int = 256
    crop_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        import torchvision.transforms.functional as TF

        x = TF.resize(batch, self.resize_size, antialias=True)
        x = TF.center_crop(x, [self.crop_size, self.crop_size])
        return TF.normalize(x.float() / 255.0, list(self.mean), list(self.std))

    def describe(self) -> dict[str, Any]:
        return {
            "resize": f"shorter side to {self.resize_size} (torchvision bilinear, antialias), centre crop "
            f"{self.crop_size}",
            "mean": list(self.mean),
            "std": list(self.std),
        }


def penultimate_and_logits(classifier: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pre-logits features, logits). timm models expose ``forward_head(pre_logits=True)``; for any other
    module the input of its last ``nn.Linear`` is the penultimate layer."""
    forward_features = getattr(classifier, "forward_features", None)
    forward_head = getattr(classifier, "forward_head", None)
    if forward_features is not None and forward_head is not None:
        trunk = forward_features(x)
        return forward_head(trunk, pre_logits=True).flatten(1), forward_head(trunk)
    linears = [m for m in classifier.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise InvalidArgument("the classifier has no nn.Linear head; cannot find its penultimate layer")
    captured: list[torch.Tensor] = []
    handle = linears[-1].register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    try:
        logits = classifier(x)
    finally:
        handle.remove()
    return captured[-1].flatten(1), logits


class DomainFeatureExtractor(FeatureExtractorBase):
    """A classifier as a torch-fidelity feature extractor: ``penultimate`` for FID/KID/PRC and
    ``logits`` (also what class anchoring reads)."""

    def __init__(
        self,
        classifier: torch.nn.Module,
        preprocess: Callable[[torch.Tensor], torch.Tensor],
        features_list: Sequence[str] = ("penultimate", "logits"),
    ) -> None:
        super().__init__("domain", list(features_list))
        self.classifier = classifier.eval().requires_grad_(False)
        self.preprocess = preprocess

    @staticmethod
    def get_provided_features_list():
        return ("penultimate", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"fid": "penultimate", "kid": "penultimate", "prc": "penultimate", "isc": "logits"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return (torch.rand([1, 3, 8, 8]) * 255).to(torch.uint8)

    def forward(self, x: torch.Tensor):
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3):
            raise InvalidArgument("the domain extractor expects uint8 N×3×H×W batches")
        features, logits = penultimate_and_logits(self.classifier, self.preprocess(x))
        out = {"penultimate": features.float(), "logits": logits.float()}
        return tuple(out[name] for name in self.features_list)


def state_dict_sha256(module: torch.nn.Module) -> str:
    """A hash of a module's weights (names, dtypes, shapes, bytes): the domain features' weights hash."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


@dataclass
class DomainConfig:
    batch_size: int = 64

    def validate(self) -> None:
        if self.batch_size < 1:
            raise InvalidArgument(f"batch_size must be >= 1, got {self.batch_size}")


@FEATURE_EXTRACTORS.register(
    "domain",
    config_cls=DomainConfig,
    profiles={"tiny": DomainConfig(16), "paper": DomainConfig(64)},
    description="penultimate-layer features of a dermoscopy classifier trained on the real training split "
    "(the classification service's checkpoint): Fréchet and kernel distances in a diagnostic space",
    capabilities={"source": "classifier checkpoint", "inception_score": "false", "class_anchoring": "true"},
    requirements=lambda: [
        {
            "name": "classifier_checkpoint",
            "description": "a classification service checkpoint",
            "available": False,
            "hint": "pass classifier_checkpoint in the request",
        }
    ],
)
def create_domain_extractor(
    config: DomainConfig,
    classifier: torch.nn.Module,
    preprocess: ClassifierPreprocess | Callable[[torch.Tensor], torch.Tensor],
    device: str = "cpu",
    source: str = "module",
    class_names: Sequence[str] = (),
) -> Extractor:
    module = DomainFeatureExtractor(classifier, preprocess).to(device)
    describe = preprocess.describe() if hasattr(preprocess, "describe") else {"preprocess": repr(preprocess)}
    return Extractor(
        "domain",
        module,
        {m: module.get_default_feature_layer_for_metric(m) for m in METRIC_LAYERS},
        state_dict_sha256(classifier),
        source,
        False,
        int(getattr(preprocess, "crop_size", 0)),
        describe.get("resize", "classifier preprocessing"),
        device,
        config.batch_size,
        extra={
            "preprocessing": describe,
            "class_names": list(class_names),
            "provenance": {"classifier": type(classifier).__name__, "class_names": list(class_names)},
        },
    )


def domain_extractor_from_checkpoint(
    data: bytes, device: str = "cpu", batch_size: int = 64, source: str = "classifier checkpoint"
) -> Extractor:
    """The domain extractor of a classification-service checkpoint (its safetensors file).

    The classification package is imported here, lazily, so the rest of the evaluation core works
    without it; it reads its own file format (``classifier_from_bytes``).
    """
    try:
        from skingenbench.services.core.classifiers.checkpoint import classifier_from_bytes
    except ImportError as exc:  # pragma: no cover - depends on what is installed
        raise FailedPrecondition(
            "domain features need the classification package (skingenbench.services.classification)",
            hint=str(exc),
        ) from None
    model, config, metadata = classifier_from_bytes(data, "cpu")
    # The normalisation the classifier was trained with, from its checkpoint's config (its weights' own).
    preprocess = ClassifierPreprocess(config.resize_size, config.image_size, config.mean, config.std)
    extractor = create_domain_extractor(
        DomainConfig(batch_size), model, preprocess, device, source, metadata["classes"]
    )
    extractor.weights_sha256 = hashlib.sha256(data).hexdigest()
    extractor.extra["provenance"].update(
        classifier=metadata["classifier"],
        checkpoint_sha256=extractor.weights_sha256,
        run={k: metadata[k] for k in ("seed", "regime", "best_epoch") if k in metadata},
    )
    return extractor
