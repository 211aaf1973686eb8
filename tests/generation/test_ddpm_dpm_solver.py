"""DDPM's third sampler, ``dpm_solver`` (diffusers' DPMSolverMultistepScheduler, DPM-Solver++ 2M): option
resolution, and that it solves the reverse process it is wired to.

The solver test replaces the UNet by the exact noise predictor of a one-point data distribution: when every
training image is the constant image c, the posterior mean of the noise given x_t is
eps*(x_t, t) = (x_t - sqrt(abar_t) c) / sqrt(1 - abar_t). Any correctly wired sampler (timesteps, model-input
scaling, prediction type, the update rule) then lands on c from any start; a sampler fed the wrong timestep or
schedule does not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.generation.core.backend import SamplerOptions
from skingenbench.services.generation.core.ddpm.config import DEFAULT_DPM_SOLVER_STEPS, SAMPLERS
from skingenbench.services.generation.core.registry import create_backend

SMALL = {"resolution": 16, "sample_batch_size": 4}
TARGET = 0.5  # the one training image's pixel value in [-1, 1]; uint8 (0.5 + 1) * 127.5 = 191.25 -> 191


def small_backend(**overrides):
    backend = create_backend("ddpm", "tiny", {**SMALL, **overrides}, device="cpu")
    backend.build(0)
    return backend


class ExactNoise(torch.nn.Module):
    """The Bayes-optimal epsilon predictor when the data is the constant image TARGET (see the module doc)."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.alphas_cumprod = alphas_cumprod.double()

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor):
        abar = self.alphas_cumprod[int(timestep)]
        noise = (sample.double() - abar.sqrt() * TARGET) / (1 - abar).sqrt()

        class Output:  # what UNet2DModel returns: an object with ``.sample``
            pass

        output = Output()
        output.sample = noise.to(sample.dtype)
        return output


def test_dpm_solver_is_a_listed_sampler_with_its_own_default_steps():
    backend = small_backend()
    assert "dpm_solver" in SAMPLERS and "dpm_solver" in backend.samplers
    resolved = backend.resolve_options(SamplerOptions(sampler="dpm_solver"))
    assert (
        (resolved.sampler, resolved.steps) == ("dpm_solver", DEFAULT_DPM_SOLVER_STEPS) == ("dpm_solver", 20)
    )
    assert backend.resolve_options(SamplerOptions(sampler="dpm_solver", steps=7)).steps == 7
    with pytest.raises(InvalidArgument, match="eta"):
        backend.resolve_options(SamplerOptions(sampler="dpm_solver", eta=0.5))
    with pytest.raises(InvalidArgument, match="exceeds num_train_timesteps"):
        backend.resolve_options(SamplerOptions(sampler="dpm_solver", steps=1001))
    # The config accepts it as its default sampler, and a request without a sampler then gets it.
    defaulted = small_backend(default_sampler="dpm_solver").resolve_options(SamplerOptions())
    assert (defaulted.sampler, defaulted.steps) == ("dpm_solver", 20)


@pytest.mark.parametrize(("sampler", "steps"), [("dpm_solver", 20), ("dpm_solver", 8), ("ddim", 20)])
def test_sampler_reaches_the_one_training_image_with_the_exact_noise_predictor(sampler, steps):
    backend = small_backend()
    exact = ExactNoise(backend.noise_scheduler.alphas_cumprod)
    images = backend._denoise(exact, [3, 4, 5], sampler, steps, 0.0)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    assert np.abs(images.astype(int) - 191).max() <= 1


def test_dpm_solver_is_deterministic_per_seed_and_differs_from_ddim():
    backend = small_backend()
    first = backend.sample([1, 2], SamplerOptions(sampler="dpm_solver", steps=5))
    # An image depends only on its seed: alone or in another batch it is the same.
    alone = backend.sample([2], SamplerOptions(sampler="dpm_solver", steps=5, batch_size=1))
    assert np.array_equal(first[1], alone[0])
    ddim = backend.sample([1, 2], SamplerOptions(sampler="ddim", steps=5))
    assert first.shape == ddim.shape == (2, 16, 16, 3) and not np.array_equal(first, ddim)
