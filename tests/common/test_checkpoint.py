"""Pickle-free checkpoints round-trip models and optimizer state exactly."""

from __future__ import annotations

import pytest
import torch
from skingenbench.services.core.checkpoint import state_from_bytes, state_to_bytes


def test_model_and_optimizer_state_round_trip_exactly():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": 3,
        "note": "x",
        "rng": torch.get_rng_state(),
    }
    tensor_bytes, skeleton = state_to_bytes(state)
    assert b"\x80\x04" not in skeleton  # JSON, not pickle
    restored = state_from_bytes(tensor_bytes, skeleton)
    assert restored["step"] == 3 and restored["note"] == "x"
    assert torch.equal(restored["rng"], state["rng"])

    clone = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    clone.load_state_dict(restored["model"])
    clone_optimizer = torch.optim.AdamW(clone.parameters(), lr=1e-3)
    clone_optimizer.load_state_dict(restored["optimizer"])
    # One more identical step on both gives identical weights: the optimizer moments came back.
    batch = torch.randn(5, 4)
    for net, opt in ((model, optimizer), (clone, clone_optimizer)):
        opt.zero_grad()
        net(batch).sum().backward()
        opt.step()
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unsupported_values_are_refused():
    with pytest.raises(TypeError, match="cannot checkpoint"):
        state_to_bytes({"bad": object()})
