"""Checkpoints without pickle (DESIGN.md, rule 7): tensors in safetensors, structure in JSON.

A training state is a nested structure of dicts and lists (model and EMA weights, optimizer state,
step counters, RNG states). ``pack_state`` walks it, moves every tensor into a flat safetensors
mapping under its path, and leaves a JSON skeleton with ``{"__tensor__": path}`` placeholders, so
optimizer state (which nests tensors in dicts keyed by integers) round-trips exactly.
"""

from __future__ import annotations

import json
from typing import Any

_TENSOR = "__tensor__"
_INT_KEYS = "__int_keys__"  # optimizer state is keyed by int parameter ids; JSON keys are strings


def pack_state(state: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a nested state into (flat tensors for safetensors, a JSON-serialisable skeleton)."""
    import torch

    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value.detach().contiguous().cpu()
            return {_TENSOR: path}
        if isinstance(value, dict):
            int_keys = bool(value) and all(isinstance(k, int) for k in value)
            packed = {str(k): walk(v, f"{path}/{k}") for k, v in value.items()}
            if int_keys:
                packed[_INT_KEYS] = True
            return packed
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot checkpoint a {type(value).__name__} at {path or '/'}")

    skeleton = walk(state, "")
    return tensors, skeleton


def unpack_state(tensors: dict[str, Any], skeleton: Any) -> Any:
    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if _TENSOR in value:
                return tensors[value[_TENSOR]]
            int_keys = value.get(_INT_KEYS, False)
            return {(int(k) if int_keys else k): walk(v) for k, v in value.items() if k != _INT_KEYS}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(skeleton)


def state_to_bytes(state: Any) -> tuple[bytes, bytes]:
    """(safetensors bytes, JSON skeleton bytes) of a nested training state."""
    from safetensors.torch import save

    tensors, skeleton = pack_state(state)
    return save(tensors), json.dumps(skeleton, sort_keys=True).encode()


def state_from_bytes(tensor_bytes: bytes, skeleton_bytes: bytes, device: str = "cpu") -> Any:
    from safetensors.torch import load

    tensors = {k: v.to(device) for k, v in load(tensor_bytes).items()}
    return unpack_state(tensors, json.loads(skeleton_bytes))
