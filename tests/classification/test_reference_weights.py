"""The reference's weights: torchvision's ImageNet-1k ``IMAGENET1K_V1`` for all five classifiers (through
timm's ``tv_in1k`` copies where timm has them, torchvision's modules where not), the normalisation those
weights expect carried from the architecture table into training, evaluation and the domain feature space,
local files checked by checksum, and the paper profile refusing to start without them (naming the file)
unless random init is asked for — which the report then says in its first lines."""

from __future__ import annotations

import dataclasses
import json

import grpc
import numpy as np
import pytest
import torch
from skingenbench.services.classification.core.data import eval_transform, train_transform
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.classifiers.checkpoint import classifier_to_bytes
from skingenbench.services.core.classifiers.models import (
    ARCHITECTURES,
    CLASSIFIERS,
    WEIGHTS_DIR_ENV,
    build_classifier,
    create_classifier,
)
from skingenbench.services.core.errors import DataIntegrityError, FailedPrecondition
from skingenbench.services.core.hashing import sha256_bytes

from skingenbench.api.v1 import classification_pb2, classification_pb2_grpc, common_pb2
from tests.common.service_helpers import running

torch.set_num_threads(1)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_classifier_names_torchvisions_imagenet1k_v1_weights_and_their_normalisation(name):
    from torchvision.models import get_weight

    architecture = ARCHITECTURES[name]
    reference = architecture.reference
    weights = get_weight(reference.torchvision)  # torchvision's metadata, no download
    assert reference.torchvision.endswith(".IMAGENET1K_V1")
    assert weights.url.rsplit("/", 1)[-1] == reference.file
    transforms = weights.transforms()
    assert (list(reference.mean), list(reference.std)) == (list(transforms.mean), list(transforms.std))
    for profile in ("tiny", "paper"):  # the normalisation travels in the config (and so in checkpoints)
        config = CLASSIFIERS.config(name, profile)
        assert (config.mean, config.std) == (reference.mean, reference.std)
    if architecture.builder == "timm":
        import timm

        # timm's tv_in1k tag is torchvision's weights: same file origin, same statistics.
        assert reference.timm_tag == f"{architecture.model_name}.tv_in1k"
        assert reference.timm_tag in timm.list_pretrained(architecture.model_name + "*")
        cfg = timm.models.get_pretrained_cfg(reference.timm_tag).to_dict()
        assert (tuple(cfg["mean"]), tuple(cfg["std"])) == (reference.mean, reference.std)
    else:
        # timm has no copy of torchvision's weights for these two: torchvision's module is built instead.
        import timm

        assert not [
            t for t in timm.list_pretrained(architecture.model_name + "*") if "tv" in t.split(".")[-1]
        ]
        model, _, _ = create_classifier(name, "tiny", {"pretrained": "none"})
        assert type(model).__module__.split(".")[0] in ("torchvision", "skingenbench")
    described = CLASSIFIERS.describe(name)
    assert described["capabilities"]["reference_weights"] == reference.torchvision


def test_transforms_and_domain_features_use_the_configs_normalisation():
    from skingenbench.services.evaluation.core.extractors import domain_extractor_from_checkpoint

    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    imagenet = CLASSIFIERS.config("resnet18", "tiny")
    half = CLASSIFIERS.config("resnet18", "tiny", {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    raw = eval_transform(image, dataclasses.replace(imagenet, mean=(0.0,) * 3, std=(1.0,) * 3))
    assert torch.allclose(eval_transform(image, half), (raw - 0.5) / 0.5, atol=1e-6)
    assert torch.allclose(
        eval_transform(image, imagenet),
        (raw - torch.tensor(imagenet.mean).view(3, 1, 1)) / torch.tensor(imagenet.std).view(3, 1, 1),
        atol=1e-6,
    )
    rng = [np.random.default_rng(1), np.random.default_rng(1)]
    assert not torch.equal(train_transform(image, half, rng[0]), train_transform(image, imagenet, rng[1]))

    # The evaluation service's domain extractor reads the normalisation from the checkpoint's config.
    model, _, _ = create_classifier("resnet18", "tiny", {"pretrained": "none"})
    data = classifier_to_bytes(model.state_dict(), "resnet18", half, {"classes": list(CLASSES)})
    extractor = domain_extractor_from_checkpoint(data)
    assert extractor.extra["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert extractor.extra["preprocessing"]["std"] == [0.5, 0.5, 0.5]


def _torchvision_file(folder, name="efficientnet_b0", builder="efficientnet_b0", seed=0):
    """A random 1000-class torchvision model saved as torchvision saves its weights (.pth)."""
    import torchvision

    torch.manual_seed(seed)
    state = getattr(torchvision.models, builder)(weights=None).state_dict()
    path = folder / f"{name}.pth"
    torch.save(state, path)
    return path, state


def test_efficientnet_b0_loads_torchvisions_file_strictly_and_checksums_are_checked(tmp_path, monkeypatch):
    path, state = _torchvision_file(tmp_path)
    config = CLASSIFIERS.config("efficientnet_b0", "tiny")
    torch.manual_seed(5)
    model, record = build_classifier("efficientnet_b0", config, path)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("classifier.1."))
    assert loaded["classifier.1.weight"].shape == (len(CLASSES), 1280)  # the head is the study's
    assert record["loaded_tensors"] == record["backbone_tensors"] > 300
    assert record["reference_weights"] == "EfficientNet_B0_Weights.IMAGENET1K_V1"
    assert record["verified_by"] == "" and record["is_torchvision_reference_file"] is False  # a random file

    digest = sha256_bytes(path.read_bytes())
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  efficientnet_b0.pth\n")
    assert build_classifier("efficientnet_b0", config, path)[1]["verified_by"] == "SHA256SUMS"
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  efficientnet_b0.pth\n")
    with pytest.raises(DataIntegrityError, match="SHA256SUMS lists"):
        build_classifier("efficientnet_b0", config, path)
    # A file of another network fills nothing: refused, not a half-random model.
    other, _ = _torchvision_file(tmp_path, "other", "resnet18")
    with pytest.raises(FailedPrecondition, match="set only 0 of"):
        build_classifier("efficientnet_b0", config, other)


def test_vit_b_16_loads_torchvisions_224px_file_at_the_tiny_size(tmp_path):
    path, state = _torchvision_file(tmp_path, "vit_base_patch16_224", "vit_b_16")
    config = CLASSIFIERS.config("vit_base_patch16_224", "tiny")
    model, record = build_classifier("vit_base_patch16_224", config, path)
    loaded = model.state_dict()
    assert record["pretrained"] is True and record["loaded_tensors"] == record["backbone_tensors"]
    assert loaded["encoder.pos_embedding"].shape == (
        1,
        1 + 4 * 4,
        768,
    )  # resampled from 14x14 (torchvision's helper)
    same = [k for k in state if not k.startswith("heads.") and k != "encoder.pos_embedding"]
    assert all(torch.equal(loaded[k], state[k]) for k in same)
    assert torch.equal(loaded["encoder.pos_embedding"][:, 0], state["encoder.pos_embedding"][:, 0])


def _request(world, profile="paper", **config):
    return classification_pb2.TrainClassifierRequest(
        classifier="resnet18",
        profile=profile,
        config_json=json.dumps(
            {"epochs": 1, "image_size": 56, "resize_size": 64, "batch_size": 16, **config}
        ),
        data=world["data"],
        seed=0,
        run_name="A1/resnet18/seed0",
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from skingenbench.services.data.operations import import_source, split_sources
    from skingenbench.services.platform.client import open_channel
    from skingenbench.services.platform.store import LocalFolderStore
    from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest

    store = LocalFolderStore(tmp_path_factory.mktemp("store"))
    imported = import_source(store, "phantom", options={"count": 60, "width": 72, "height": 64}, seed=2)
    split = split_sources(store, [(imported.ref.uri, imported.ref.sha256)], (0.7, 0.15, 0.15), seed=2)
    data = preprocess_manifest(store, split.ref.uri, PreprocessSpec("basic", "tiny"), workers=1).ref
    with running("classification", store) as svc, open_channel(svc.target) as channel:
        yield {
            "store": store,
            "channel": channel,
            "data": common_pb2.ManifestRef(uri=data.uri, sha256=data.sha256),
            "stub": classification_pb2_grpc.ClassificationStub(channel),
        }


def test_the_paper_profile_without_weights_is_refused_at_start_naming_the_file(world, tmp_path, monkeypatch):
    stub = world["stub"]
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    with pytest.raises(grpc.RpcError) as refused:
        stub.StartTraining(_request(world), timeout=30)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    message = refused.value.details()
    assert str(tmp_path / "resnet18.safetensors") in message and str(tmp_path / "resnet18.pth") in message
    assert not list(world["store"].list("jobs/")) or all(
        "train_classifier" not in key for key in world["store"].list("jobs/")
    )  # no job was created

    monkeypatch.delenv(WEIGHTS_DIR_ENV)
    with pytest.raises(grpc.RpcError) as unset:
        stub.StartTraining(_request(world, pretrained="auto"), timeout=30)  # "auto" does not mean random here
    assert unset.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "$SKINGENBENCH_WEIGHTS_DIR/resnet18.safetensors" in unset.value.details()

    # A file nothing vouches for is not the reference's weights: refused too; SHA256SUMS vouches.
    import timm
    from safetensors.torch import save_file

    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    save_file(
        timm.create_model("resnet18", num_classes=1000).state_dict(), str(tmp_path / "resnet18.safetensors")
    )
    with pytest.raises(grpc.RpcError) as unvouched:
        stub.StartTraining(_request(world), timeout=30)
    assert unvouched.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SHA256SUMS" in unvouched.value.details()
    assert stub.GetServiceInfo(common_pb2.GetServiceInfoRequest(), timeout=10).ByteSize() > 0  # still serving


def test_random_init_in_the_paper_profile_only_when_asked_and_then_recorded(world, monkeypatch):
    from skingenbench.services.platform.client import watch_job

    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    job = world["stub"].StartTraining(_request(world, pretrained="none"), timeout=30)
    done = watch_job(world["channel"], job.job_id, timeout_s=300)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message
    summary = json.loads(done.result_json)
    assert summary["pretrained"] is False
    assert summary["pretrained_record"] == {"pretrained": False, "source": "random init", "requested": "none"}


def test_the_reports_first_lines_say_where_each_model_started(tmp_path):
    from skingenbench.flows.reference_departures import departure_lines
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(tmp_path)
    store.put_bytes(
        "tests/a.json",
        json.dumps(
            {
                "run": {
                    "classifier": "resnet18",
                    "profile": "paper",
                    "pretrained": False,
                    "pretrained_record": {"pretrained": False, "source": "random init", "requested": "none"},
                }
            }
        ).encode(),
    )
    store.put_bytes(
        "tests/b.json",
        json.dumps(
            {
                "run": {
                    "classifier": "resnet50",
                    "profile": "paper",
                    "pretrained": True,
                    "pretrained_record": {
                        "pretrained": True,
                        "source": "file",
                        "file": "resnet50.pth",
                        "sha256": "0676ba61" + "0" * 56,
                        "verified_by": "torchvision file name resnet50-0676ba61.pth",
                    },
                }
            }
        ).encode(),
    )
    store.put_bytes(
        "models/stylegan2_ada/k1/model.json", json.dumps({"provenance": {"config": {"init": {}}}}).encode()
    )
    store.put_bytes(
        "models/stylegan2_ada/k2/model.json",
        json.dumps({"provenance": {"config": {"init": {"uri": "/weights/ffhq256"}}}}).encode(),
    )
    run = {
        "tests": {
            "A1/resnet18/0": {"outputs": {"result_json": store.uri("tests/a.json")}},
            "A1/resnet50/0": {"outputs": {"result_json": store.uri("tests/b.json")}},
        },
        "generators": {
            "basic/stylegan2_ada": {"result": {"model_uri": store.uri("models/stylegan2_ada/k1")}},
            "advanced/stylegan2_ada": {"result": {"model_uri": store.uri("models/stylegan2_ada/k2")}},
        },
    }
    text = "\n".join(departure_lines(store, run))
    assert (
        "**departs from the reference:** classifier `resnet18`: random init, as requested (pretrained 'none')"
        in text
    )
    assert (
        "classifier `resnet50`: ImageNet weights from resnet50.pth" in text
        and "departs from the reference:** classifier `resnet50`" not in text
    )
    assert (
        "**departs from the reference:** generator `basic/stylegan2_ada`: trained from scratch (the reference transferred from NVIDIA's FFHQ-256 network)"
        in text
    )
    assert "generator `advanced/stylegan2_ada`: transferred from /weights/ffhq256" in text
