"""The generator contract, checked for every registered backend (as diffusers' shared scheduler tests and timm's
registry-parametrized tests do): config round trip, registration, declared model/training fields,
determinism per seed, resume equals a straight run, empty and one-image batches, save_pretrained /
from_pretrained, and the training-set hook. A backend added to the registry is tested here without a new line
of test code beyond its entry in ``CONTRACT``."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from skingenbench.services.core.checkpoint import state_from_bytes, state_to_bytes
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core import training
from skingenbench.services.generation.core.backend import (
    CONFIG_FILE,
    GeneratorBackend,
    GeneratorConfig,
    SamplerOptions,
)
from skingenbench.services.generation.core.registry import (
    GENERATORS,
    backend_from_config_json,
    create_backend,
    from_pretrained,
)

STEPS = 4
# Per backend: overrides of its tiny profile that train STEPS steps in about a second on one CPU thread, and a
# change of one model field (to a valid value) whose weights must not load into the small model.
CONTRACT = {
    "ddpm": {
        "small": {
            "resolution": 16,
            "block_out_channels": [8, 16],
            "norm_num_groups": 4,
            "batch_size": 2,
            "train_steps": STEPS,
            "lr_warmup_steps": 1,
            "num_train_timesteps": 20,
            "default_ddim_steps": 4,
            "sample_batch_size": 2,
        },
        "other_model": {"beta_schedule": "scaled_linear"},
    },
    "stylegan2_ada": {
        "small": {
            "resolution": 16,
            "batch_size": 2,
            "train_kimg": STEPS * 2 / 1000,
            "sample_batch_size": 2,
            "augment_p": 0.5,
            "r1_interval": 2,
            "pl_interval": 2,
        },
        "other_model": {"channel_max": 16},
    },
    "dermgan": {
        "small": {"resolution": 32, "batch_size": 2, "train_steps": STEPS, "sample_batch_size": 2},
        "other_model": {"generator_max_width": 32},
    },
}
NAMES = GENERATORS.names()


def examples(resolution: int, count: int = 6) -> list[tuple[np.ndarray, np.ndarray, float, str]]:
    """(image, lesion mask, ITA, label) items: noise images with a square lesion of varying size and tone."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(count):
        mask = np.zeros((resolution, resolution), np.uint8)
        side = resolution // 4 + i % 3
        mask[side : 2 * side, side : 2 * side] = 255
        items.append(
            (rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8), mask, 10.0 + 5 * i, "MEL")
        )
    return items


def small(name: str, **overrides) -> GeneratorBackend:
    return create_backend(name, "tiny", {**CONTRACT[name]["small"], **overrides}, device="cpu")


def prepared(name: str, seed: int = 3, total_steps: int | None = STEPS, **overrides):
    """A small backend, its training set (which gives a conditional backend its condition distribution) and the
    backend built with ``seed``."""
    backend = small(name, **overrides)
    dataset, _ = backend.training_set(examples(backend.resolution))
    backend.build(
        seed, total_steps=backend.total_steps_for(len(dataset)) if total_steps is None else total_steps
    )
    return backend, dataset


@pytest.fixture(scope="module", params=NAMES)
def trained(request):
    """(name, backend trained STEPS steps straight through, its dataset)."""
    backend, dataset = prepared(request.param)
    training.train(backend, dataset, seed=5)
    return request.param, backend, dataset


def same_images(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to one level: batched kernels may round differently from single-image ones."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max(initial=0)) <= 1


# -- registration and config --------------------------------------------------------------------------------
def test_every_registered_generator_is_in_the_contract():
    assert NAMES and sorted(CONTRACT) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_registration_comes_from_the_backend_class(name):
    entry = GENERATORS.get(name)
    backend_class = entry.factory
    assert issubclass(backend_class, GeneratorBackend) and backend_class.name == name
    assert entry.config_cls is backend_class.config_class and issubclass(entry.config_cls, GeneratorConfig)
    assert all(isinstance(config, backend_class.config_class) for config in entry.profiles.values())
    assert entry.capabilities["samplers"].split(",") == list(backend_class.samplers)
    assert entry.capabilities["default_sampler"] in backend_class.samplers
    assert json.loads(json.dumps(GENERATORS.describe(name)))["name"] == name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("profile", ["tiny", "paper"])
def test_config_round_trips_through_json_and_the_config_document(name, profile):
    config = GENERATORS.config(name, profile)
    backend_class = GENERATORS.get(name).factory
    assert backend_class.config_class.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    backend = create_backend(name, profile, device="cpu")  # unbuilt: no paper-sized networks here
    assert backend_from_config_json(backend.config_json(), device="cpu").config == config
    assert (
        backend_class.from_config(json.loads(backend.config_json())["config"], device="cpu").config == config
    )
    assert json.loads(backend.config_json()) == {
        "backend": name,
        "config": json.loads(json.dumps(config.to_dict())),
    }


@pytest.mark.parametrize("name", NAMES)
def test_declared_limits_are_enforced_naming_the_field(name):
    config_class = GENERATORS.get(name).factory.config_class
    for spec in dataclasses.fields(config_class):
        low = spec.metadata.get("low")
        if spec.type in ("int", "float") and low is not None and math.isfinite(low):
            below = low - 1 if spec.type == "int" else low - 0.5
            with pytest.raises(InvalidArgument) as caught:
                GENERATORS.config(name, "tiny", {spec.name: below})
            assert caught.value.context["field"] == spec.name and spec.name in str(caught.value)
        if spec.type in ("int", "float"):
            with pytest.raises(InvalidArgument) as caught:
                GENERATORS.config(name, "tiny", {spec.name: "a string"})
            assert caught.value.context["field"] == spec.name
        if spec.metadata.get("choices") and spec.type == "str":
            with pytest.raises(InvalidArgument) as caught:
                GENERATORS.config(name, "tiny", {spec.name: "no-such-choice"})
            assert caught.value.context["field"] == spec.name
    with pytest.raises(InvalidArgument, match="unknown config key"):
        GENERATORS.config(name, "tiny", {"no_such_field": 1})


@pytest.mark.parametrize("name", NAMES)
def test_numbers_are_kept_as_written_because_the_config_is_hashed_into_model_addresses(name):
    """An int given for a float field stays an int: ``{"train_kimg": 240}`` must address the same model as before
    the generators moved onto the shared config machinery."""
    config = GENERATORS.config(name, "tiny")
    floats = [
        spec.name
        for spec in dataclasses.fields(config)
        if spec.type == "float" and getattr(config, spec.name) == int(getattr(config, spec.name)) != 0
    ]
    assert floats, "no integral float default to try"
    for field_name in floats:
        value = int(getattr(config, field_name))
        written = GENERATORS.config(name, "tiny", {field_name: value}).to_dict()[field_name]
        assert type(written) is int and written == value


@pytest.mark.parametrize("name", NAMES)
def test_model_and_training_fields_are_declared_and_the_init_check_uses_them(name):
    backend = small(name)
    fields = {spec.name for spec in dataclasses.fields(backend.config)}
    model, training_fields = set(backend.model_fields), set(backend.training_fields)
    assert model and training_fields and "resolution" in model
    assert model <= fields and training_fields <= fields and not model & training_fields
    saved = json.loads(backend.config_json())["config"]
    backend.check_init_config(saved)  # its own config fits
    backend.check_init_config(
        {**saved, "sample_batch_size": saved["sample_batch_size"] + 1}
    )  # sampling default
    for field_name, value in CONTRACT[name]["other_model"].items():
        assert field_name in model
        with pytest.raises(FailedPrecondition, match=field_name):
            backend.check_init_config({**saved, field_name: value})


# -- training, determinism, resume --------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_the_training_set_feeds_the_training_loop(name):
    fresh = small(name)
    items = examples(fresh.resolution)
    built, skipped = fresh.training_set(items)
    assert len(built) + skipped == len(items) and built
    assert all(len(item) == (3 if fresh.conditional else 2) for item in built)
    images, _labels, conditions = training.make_batch(built, [(0, False), (1, True)], fresh.resolution)
    assert (
        images.shape == (2, 3, fresh.resolution, fresh.resolution)
        and (conditions is not None) == fresh.conditional
    )


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_builds_the_same_model_and_another_seed_does_not(name):
    first, second, other = prepared(name, seed=3)[0], prepared(name, seed=3)[0], prepared(name, seed=4)[0]
    assert state_to_bytes(first.state()) == state_to_bytes(second.state())
    assert state_to_bytes(first.state())[0] != state_to_bytes(other.state())[0]


def test_sampling_is_a_function_of_the_seed(trained):
    _name, backend, _ = trained
    images = backend.sample([11, 12, 13])
    assert np.array_equal(images, backend.sample([11, 12, 13]))
    assert same_images(backend.sample([12]), images[1:2])  # its batch does not change an image
    assert same_images(backend.sample([11, 12, 13], SamplerOptions(batch_size=1)), images)
    assert not np.array_equal(images[0], images[1])


def test_resume_from_a_checkpoint_equals_a_straight_run(trained):
    name, straight, dataset = trained
    saved: dict[int, tuple[bytes, bytes]] = {}
    first, _ = prepared(name)
    result = training.train(
        first,
        dataset,
        seed=5,
        should_stop=lambda: first.step == 2,
        save_checkpoint=lambda step, state: saved.__setitem__(step, state_to_bytes(state)),
    )
    assert result.interrupted and list(saved) == [2]
    resumed, _ = prepared(name)
    result = training.train(resumed, dataset, seed=5, load_checkpoint=lambda: state_from_bytes(*saved[2]))
    assert result.resumed_from == 2 and resumed.step == straight.step == STEPS
    assert state_to_bytes(resumed.state()) == state_to_bytes(straight.state())
    assert np.array_equal(resumed.sample([7, 8]), straight.sample([7, 8]))


def test_state_refuses_what_it_cannot_continue(trained):
    name, backend, dataset = trained
    state = state_from_bytes(*state_to_bytes(backend.state()))
    sampler, _ = prepared(name, total_steps=0)
    sampler.load_state(state)  # a sampling-only backend takes the sampling weights
    assert np.array_equal(sampler.sample([7, 8]), backend.sample([7, 8]))
    with pytest.raises(FailedPrecondition, match="sampling only"):
        sampler.state()
    with pytest.raises(FailedPrecondition, match="checkpoint"):
        sampler.load_state({"format": "something else"})
    other, _ = prepared(name, **CONTRACT[name]["other_model"])
    with pytest.raises(FailedPrecondition, match=next(iter(CONTRACT[name]["other_model"]))):
        other.load_state(state)
    with pytest.raises(FailedPrecondition, match="planned for"):  # all planned steps are taken
        backend.train_step(
            *training.make_batch(dataset, [(0, False)] * backend.batch_size, backend.resolution)
        )
    with pytest.raises(InvalidArgument, match="total_steps"):
        small(name).build(0, total_steps=-1)
    with pytest.raises(InvalidArgument, match="seed"):
        backend.sample([-1])


# -- sampling -----------------------------------------------------------------------------------------------
def test_empty_and_one_image_batches_have_the_image_shape(trained):
    name, backend, _ = trained
    side = backend.resolution
    for sampler in (backend, prepared(name, total_steps=0)[0]):
        empty, one = sampler.sample([]), sampler.sample([9])
        assert empty.shape == (0, side, side, 3) and empty.dtype == np.uint8
        assert one.shape == (1, side, side, 3) and one.dtype == np.uint8


@pytest.mark.parametrize("name", NAMES)
def test_resolve_options_fills_every_default_once(name):
    backend = small(name)
    resolved = backend.resolve_options(None)
    assert isinstance(resolved, SamplerOptions) and resolved.sampler in backend.samplers
    assert resolved.batch_size == backend.sample_batch_size
    assert backend.resolve_options(resolved) == resolved  # a manifest's recorded options draw the same images
    assert backend.resolve_options(SamplerOptions(batch_size=3)).batch_size == 3
    with pytest.raises(InvalidArgument) as caught:
        backend.resolve_options(SamplerOptions(sampler="no-such-sampler"))
    assert caught.value.context["field"] == "sampler"
    for field_name in backend.inapplicable_options:
        value = {"steps": 5, "eta": 0.5, "truncation_psi": 0.5}[field_name]
        with pytest.raises(InvalidArgument) as caught:
            backend.resolve_options(dataclasses.replace(resolved, **{field_name: value}))
        assert caught.value.context["field"] == field_name


# -- export ----------------------------------------------------------------------------------------------------
def test_save_pretrained_reloads_with_from_pretrained_and_as_an_init(trained, tmp_path):
    name, backend, _ = trained
    folder = backend.save_pretrained(tmp_path / "model")
    assert (folder / CONFIG_FILE).is_file() and list(folder.glob("*.safetensors"))
    expected = backend.sample([21, 22])
    for reloaded in (
        from_pretrained(folder, device="cpu"),
        type(backend).from_pretrained(folder, device="cpu"),
    ):
        assert type(reloaded) is type(backend) and reloaded.config == backend.config
        assert not reloaded.trainable and np.array_equal(reloaded.sample([21, 22]), expected)
    transfer = small(name)
    transfer.training_set(examples(transfer.resolution))
    transfer.build(1, total_steps=2, init_from=str(folder))
    assert transfer.trainable and transfer.step == 0
    other = small(name, **CONTRACT[name]["other_model"])
    with pytest.raises(FailedPrecondition, match=next(iter(CONTRACT[name]["other_model"]))):
        other.build(0, init_from=str(folder))
    stranger = next(n for n in NAMES if n != name)
    with pytest.raises(InvalidArgument, match=f"holds a {name} model"):
        GENERATORS.get(stranger).factory.from_pretrained(folder, device="cpu")
