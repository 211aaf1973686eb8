"""Grad-CAM overlays (Selvaraju et al. 2017) through the maintained ``grad-cam`` package.

A class activation map weights a layer's activations by the spatially averaged gradient of the class
score, so it shows where the network looked for that class. The target layer is the last one that
still has spatial layout: ``layer4`` for ResNets, the ReLU after conv5_3 for VGG-16, the final
``bn2`` for EfficientNet-B0, and for ViT-B/16 the ``norm1`` of the last block, whose patch tokens are
reshaped back into the patch grid (the class and other prefix tokens are dropped). The overlay is the
jet-coloured map blended onto the evaluation crop the model saw (Resize + CenterCrop).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skingenbench.services.classification.core.data import denormalise, eval_transform
from skingenbench.services.core.classifiers.models import ARCHITECTURES, ClassifierConfig
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.imaging.decoding import encode_png


@dataclass
class CamOverlay:
    png: bytes  # RGB overlay, image_size x image_size
    cam: np.ndarray  # float [S, S] in [0, 1]
    target_class: int  # the class the map explains (the predicted one)
    probs: np.ndarray  # the model's probabilities for the image


def target_layer(model: torch.nn.Module, name: str, path: str = "") -> tuple[str, torch.nn.Module]:
    """(module path, module) of Grad-CAM's target: ``path`` if given, else the architecture's default."""
    path = path or ARCHITECTURES[name].gradcam_layer
    try:
        return path, model.get_submodule(path)
    except AttributeError:
        raise InvalidArgument(
            f"{name} has no module {path!r} for Grad-CAM",
            hint=f"default: {ARCHITECTURES[name].gradcam_layer}; module paths as in model.named_modules()",
        ) from None


def vit_reshape(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Tokens [B, prefix + h*w, D] -> feature map [B, D, h, w] (what a CAM needs from a transformer)."""
    prefix = getattr(model, "num_prefix_tokens", 1)
    # timm's PatchEmbed (timm's types are not followed); torch types a looked-up submodule as Tensor | Module.
    patch_embed: Any = model.patch_embed
    grid = patch_embed.grid_size

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, prefix:, :]
        return patches.reshape(tokens.shape[0], grid[0], grid[1], tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


def gradcam_overlays(
    model: torch.nn.Module,
    name: str,
    config: ClassifierConfig,
    images: Sequence[np.ndarray],
    layer: str = "",
    device: str = "cpu",
    batch_size: int = 8,
) -> list[CamOverlay]:
    """One overlay per uint8 RGB image, explaining the model's predicted class."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    _, module = target_layer(model, name, layer)
    model = model.to(device).eval()
    # Grad-CAM needs float32 gradients through the whole net: no autocast, default memory format.
    reshape = vit_reshape(model) if ARCHITECTURES[name].is_vit else None
    overlays: list[CamOverlay] = []
    with GradCAM(model=model, target_layers=[module], reshape_transform=reshape) as cam:
        for start in range(0, len(images), batch_size):
            batch = torch.stack(
                [eval_transform(image, config) for image in images[start : start + batch_size]]
            )
            with torch.no_grad():
                probs = torch.softmax(model(batch.to(device)).float(), dim=1).cpu().numpy()
            predicted = probs.argmax(axis=1)
            targets = [ClassifierOutputTarget(int(c)) for c in predicted]
            maps = cam(input_tensor=batch.to(device), targets=targets)
            for k, heat in enumerate(maps):
                rgb = denormalise(batch[k], config).astype(np.float32)
                overlay = show_cam_on_image(rgb, np.nan_to_num(heat).astype(np.float32), use_rgb=True)
                overlays.append(CamOverlay(encode_png(overlay), heat, int(predicted[k]), probs[k]))
    return overlays
