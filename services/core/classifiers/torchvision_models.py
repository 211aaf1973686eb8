"""EfficientNet-B0 and ViT-B/16 as torchvision builds them, loading torchvision's own ImageNet-1k files.

The reference study fine-tuned torchvision's ``EfficientNet_B0_Weights.IMAGENET1K_V1`` and
``ViT_B_16_Weights.IMAGENET1K_V1``. timm has no copy of either (its EfficientNet-B0 weights are its own
RandAugment runs, its ViT-B/16 ones ImageNet-21k/AugReg/DINO/MAE/SAM trainings), and torchvision's
parameter names are not timm's, so these two are torchvision's modules with the 1000-class head replaced.
A local file (``.pth`` through ``torch.load(weights_only=True)``, or the same tensors as safetensors) must
set every tensor but the head: loading is strict apart from the head, so a file of another model fails
loudly instead of leaving layers at random init.

``TorchvisionViT`` adds the two attributes of timm's ViT that Grad-CAM reads (``num_prefix_tokens`` and
``patch_embed.grid_size``); everything else (the domain feature extractor's "input of the last Linear")
works on torchvision's modules as they are.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from skingenbench.services.core.errors import FailedPrecondition
from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

# The head that is replaced (the study's five classes instead of ImageNet's 1000), per torchvision builder.
HEADS = {"efficientnet_b0": "classifier.1.", "vit_b_16": "heads.head."}


class TorchvisionViT(VisionTransformer):
    """torchvision's ViT-B/16 (``vit_b_16``'s arguments) at any multiple of 16 pixels."""

    num_prefix_tokens = 1  # the class token, before the patch tokens

    def __init__(self, image_size: int, num_classes: int) -> None:
        super().__init__(
            image_size=image_size,
            patch_size=16,
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            mlp_dim=3072,
            num_classes=num_classes,
        )

    @property
    def patch_embed(self) -> SimpleNamespace:
        """timm's ``patch_embed.grid_size`` / ``img_size`` (read by Grad-CAM's token reshape); not a module."""
        side = self.image_size // self.patch_size
        return SimpleNamespace(grid_size=(side, side), img_size=(self.image_size, self.image_size))


def build(model_name: str, image_size: int, num_classes: int) -> torch.nn.Module:
    """A randomly initialised torchvision model with a ``num_classes`` head."""
    if model_name == "vit_b_16":
        return TorchvisionViT(image_size, num_classes)
    if model_name == "efficientnet_b0":
        from torchvision.models import efficientnet_b0

        return efficientnet_b0(weights=None, num_classes=num_classes)
    raise ValueError(f"no torchvision build for {model_name!r}")


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a torch file, never running pickled code (DESIGN.md, rule 7)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure: not a weights file we can read
        raise FailedPrecondition(
            f"weights file {path.name} is not a readable state dict ({type(error).__name__})",
            hint="torchvision's .pth file, or its tensors as .safetensors",
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FailedPrecondition(f"weights file {path.name} does not hold a state dict of tensors")
    return state


def load_state(model: torch.nn.Module, model_name: str, state: dict[str, Any], what: str) -> dict[str, int]:
    """Every tensor but the head from ``state`` (strict otherwise); ``{"loaded_tensors", "backbone_tensors"}``."""
    head = HEADS[model_name]
    source = {k: v for k, v in state.items() if not k.startswith(head)}
    if isinstance(model, TorchvisionViT) and "encoder.pos_embedding" in source:
        expected = model.encoder.pos_embedding.shape
        if source["encoder.pos_embedding"].shape != expected and source["encoder.pos_embedding"].ndim == 3:
            # The weights are for 224 px; a smaller grid takes the positions resampled (torchvision's own helper).
            source = dict(interpolate_embeddings(model.image_size, model.patch_size, source))
    try:
        missing, unexpected = model.load_state_dict(source, strict=False)
    except RuntimeError as error:  # shape mismatches: weights of another architecture
        raise FailedPrecondition(f"{what} does not fit {model_name}: {str(error)[:300]}") from None
    missing = [k for k in missing if not k.startswith(head) and not k.endswith("num_batches_tracked")]
    backbone = [
        k for k in model.state_dict() if not k.startswith(head) and not k.endswith("num_batches_tracked")
    ]
    if missing or unexpected:
        loaded = sum(k in source for k in backbone)
        raise FailedPrecondition(
            f"{what} set only {loaded} of {len(backbone)} backbone tensors of "
            f"{model_name} (unset: {missing[:3]}; not in {model_name}: {unexpected[:3]})",
            hint=f"the file must use torchvision's parameter names for {model_name}",
        )
    return {"loaded_tensors": len(backbone), "backbone_tensors": len(backbone)}


def load_backbone(model: torch.nn.Module, model_name: str, path: Path, name: str) -> dict[str, int]:
    return load_state(model, model_name, read_state(path), f"weights file {path.name}")


def load_reference_from_hub(model: torch.nn.Module, weights: str) -> None:
    """torchvision's download of the reference weights (``pretrained="hub"`` only)."""
    from torchvision.models import get_weight

    model_name = "vit_b_16" if isinstance(model, TorchvisionViT) else "efficientnet_b0"
    load_state(model, model_name, get_weight(weights).get_state_dict(progress=False), weights)
