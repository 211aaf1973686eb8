"""Classifier training benchmarks (issue 20, item 3).

- **The training core against a minimal library loop** (goal: ratio >= 0.95), resnet18 and ViT-B/16 at the
  tiny profile's sizes: the project's ``train_classifier`` (as scientists import it: images in memory, no
  checkpoint callbacks) against the loop a user would write with the same library model — the registry's
  builder called directly (``timm.create_model`` for resnet18; torchvision's ``vit_b_16`` for ViT-B/16, which
  is what the registry builds) — SGD, torchvision's RandomResizedCrop + flip on the same decoded images, and
  the model selection the core does: a forward over the same two val images after every epoch, the best state
  kept (without it the peer skips the first eval-mode forward's oneDNN set-up, ~0.8 CPU s, about 10% of a
  resnet18 run at these sizes: the quick run's 0.88 before the peer validated).
- **Training as the job runs it, decoding from the store with its checkpoints** (goal >= 0.95), resnet18:
  images read and decoded from the store through ``ManifestImages``, the resumable state written through the
  job's ``ResumeState`` after every epoch but the last (``checkpoint_every_s=0``: the most often the job
  writes it; the job's own interval is ``CHECKPOINT_EVERY_S``), the best model written to the store as the
  job does, against the user's loop decoding with PIL from the same store and ``torch.save``-ing the model
  and optimiser after the same epochs and the model at the end.

Same images, batch size (16), epochs (2), optimiser (SGD, lr 0.01, momentum 0.9, weight decay 1e-4) and
threads on both sides; each side in a fresh process, alternately; images per CPU second; ratio = project /
peer. Training images/s per registered model (tiny on CPU; the paper profile with AMP and channels_last on a
GPU) are reported beside, as before.

Sizes (about 7 minutes on 2 quiet cores, estimated from the quick run's children: one resnet18 training image
costs ~0.07 CPU s here, one ViT-B/16 image at 64 px ~0.3 CPU s, each child ~4 CPU s of start-up outside the
timed part; 30 children):

- full (CPU): resnet18 on 48 stored 64×64 PNGs, ViT-B/16 on 16 stored 72×72 PNGs, resnet18 from the store with
  checkpoints on 48; 5 pairs each; training speeds of resnet18 and efficientnet_b0 (all five on a GPU).
- quick: the same (the pairs need these sizes to rise above start-up noise; quick is not smaller here).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from bench.fresh import alternating_pairs, measure_in_fresh_process

EPOCHS, BATCH = 2, 16
OVERRIDES = {
    "pretrained": "none",
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "epochs": EPOCHS,
    "batch_size": BATCH,
}


def prepare_images(folder: str, count: int, size: int) -> dict[str, Any]:
    """Fresh-process child: ``count`` phantom PNGs of five classes in a folder store; their items as dicts."""
    import numpy as np
    from skingenbench.services.core.imaging.decoding import encode_png
    from skingenbench.services.data.core.phantom import PhantomConfig, render_phantom
    from skingenbench.services.platform.store import LocalFolderStore

    store, rng = LocalFolderStore(folder), np.random.default_rng(0)
    labels, items = ["NV", "BCC", "BKL", "MEL", "SCC"], []
    for index in range(count):
        label = labels[index % 5]
        image = render_phantom(label, rng, PhantomConfig(width=size, height=size)).image
        stored = store.put_bytes(f"images/{index:05d}.png", encode_png(image), "image/png")
        items.append({"key": stored.key, "sha256": stored.sha256, "label": label, "lesion_id": str(index)})
    return {"items": items}


def _config(classifier: str):
    from skingenbench.services.core.classifiers.models import create_classifier

    return create_classifier(classifier, "tiny", OVERRIDES)


def _decoded(folder: str, items: list[dict]) -> list[tuple[Any, int]]:
    """(uint8 HWC image, class index) of every item: what both sides of the in-memory comparison train on."""
    import io

    import numpy as np
    from PIL import Image
    from skingenbench.services.core.classes import CLASSES
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(folder)
    return [
        (
            np.asarray(Image.open(io.BytesIO(store.get_bytes(item["key"]))).convert("RGB")),
            list(CLASSES).index(item["label"]),
        )
        for item in items
    ]


def project_in_memory(folder: str, items: list[dict], classifier: str) -> float:
    """Fresh-process child: images per CPU second of the training core on decoded images in memory."""
    from skingenbench.services.classification.core.training import train_classifier

    data = _decoded(folder, items)
    model, _, config = _config(classifier)
    started = time.process_time()
    outcome = train_classifier(model, config, data, data[:2], seed=0)
    seconds = time.process_time() - started
    if sum(r["train_images"] for r in outcome.history) != len(data) * EPOCHS:
        raise RuntimeError(f"asked for {len(data)} images x {EPOCHS} epochs, trained {outcome.history}")
    return len(data) * EPOCHS / seconds


def project_from_store(folder: str, items: list[dict], classifier: str) -> float:
    """Fresh-process child: images per CPU second of the training core as the training job drives it."""
    from skingenbench.services.classification.core.training import train_classifier
    from skingenbench.services.classification.manifest_images import ManifestImages
    from skingenbench.services.classification.training_job import ResumeState
    from skingenbench.services.core.classifiers.checkpoint import classifier_to_bytes
    from skingenbench.services.core.manifest import Item
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(folder)
    records = [Item.from_dict(item) for item in items]
    model, _, config = _config(classifier)
    state = ResumeState(store, "bench-project")
    saves = []
    started = time.process_time()
    outcome = train_classifier(
        model,
        config,
        ManifestImages(store, records),
        ManifestImages(store, records[:2]),
        seed=0,
        save_checkpoint=lambda s: (saves.append(1), state.save(s)),
        load_checkpoint=state.load,
        checkpoint_every_s=0.0,
    )
    model_bytes = classifier_to_bytes(outcome.best_state, classifier, config, {})
    store.put_bytes("bench-project/model.safetensors", model_bytes)
    seconds = time.process_time() - started
    state.delete()  # the next child starts from scratch, as the peer does
    if len(saves) != EPOCHS - 1 or sum(r["train_images"] for r in outcome.history) != len(records) * EPOCHS:
        raise RuntimeError(f"expected {EPOCHS - 1} checkpoints and {len(records) * EPOCHS} images: {saves}")
    return len(records) * EPOCHS / seconds


def _library_model(classifier: str, config):
    """The registry's architecture built by its library directly, as a user would."""
    from skingenbench.services.core.classifiers.models import ARCHITECTURES

    architecture = ARCHITECTURES[classifier]
    if architecture.builder == "timm":
        import timm

        kwargs = {"img_size": config.image_size} if architecture.is_vit else {}
        return timm.create_model(architecture.model_name, pretrained=False, num_classes=5, **kwargs)
    import torchvision.models

    kwargs = {"image_size": config.image_size} if architecture.is_vit else {}
    return getattr(torchvision.models, architecture.model_name)(weights=None, num_classes=5, **kwargs)


def _peer_loop(classifier: str, count: int, batch_of, on_epoch) -> float:
    """The user's loop: model, SGD, per-image RandomResizedCrop + flip, cross-entropy, and after each epoch
    what model selection needs (the core selects on its val set, here the same first two images): resize +
    centre crop, a no-grad forward, softmax, the best state kept; CPU seconds."""
    import copy

    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision.transforms.v2 as T

    _, _, config = _config(classifier)  # only its sizes: the model is the library's own
    model = _library_model(classifier, config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    augment = T.Compose(
        [
            T.RandomResizedCrop(config.image_size, scale=config.crop_scale, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(config.mean, config.std),
        ]
    )
    evaluate = T.Compose(
        [
            T.Resize(config.resize_size, antialias=True),
            T.CenterCrop(config.image_size),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(config.mean, config.std),
        ]
    )
    best, best_accuracy = None, -1.0
    started = time.process_time()
    for epoch in range(EPOCHS):
        model.train()
        order = np.random.default_rng(epoch).permutation(count)
        for start in range(0, count, BATCH):
            arrays, labels = batch_of(order[start : start + BATCH])
            images = torch.stack([augment(torch.from_numpy(a).permute(2, 0, 1)) for a in arrays])
            loss = F.cross_entropy(model(images), torch.tensor(labels))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        arrays, labels = batch_of(np.arange(2))
        with torch.no_grad():
            images = torch.stack([evaluate(torch.from_numpy(a).permute(2, 0, 1)) for a in arrays])
            accuracy = float((model(images).softmax(1).argmax(1) == torch.tensor(labels)).float().mean())
        if accuracy > best_accuracy:
            best, best_accuracy = copy.deepcopy(model.state_dict()), accuracy
        on_epoch(epoch, model, optimizer)
    seconds = time.process_time() - started
    if best is None:
        raise RuntimeError("the loop selected no model")
    return seconds


def peer_in_memory(folder: str, items: list[dict], classifier: str) -> float:
    """Fresh-process child: the same training as a user's minimal loop on the same decoded images."""
    data = _decoded(folder, items)

    def batch_of(indices):
        return [data[i][0] for i in indices], [data[i][1] for i in indices]

    seconds = _peer_loop(classifier, len(data), batch_of, lambda *_: None)
    return len(data) * EPOCHS / seconds


def peer_from_store(folder: str, items: list[dict], classifier: str) -> float:
    """Fresh-process child: the user's loop decoding with PIL from the store, ``torch.save`` of model and
    optimiser after every epoch but the last, the model at the end."""
    import io

    import numpy as np
    import torch
    from PIL import Image
    from skingenbench.services.core.classes import CLASSES
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(folder)

    def batch_of(indices):
        batch = [items[i] for i in indices]
        arrays = [np.asarray(Image.open(io.BytesIO(store.get_bytes(i["key"]))).convert("RGB")) for i in batch]
        return arrays, [list(CLASSES).index(i["label"]) for i in batch]

    def save(epoch, model, optimizer):
        buffer = io.BytesIO()
        if epoch < EPOCHS - 1:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
            store.put_bytes("bench-peer/checkpoint.pt", buffer.getvalue())
        else:
            torch.save(model.state_dict(), buffer)
            store.put_bytes("bench-peer/model.pt", buffer.getvalue())

    seconds = _peer_loop(classifier, len(items), batch_of, save)
    return len(items) * EPOCHS / seconds


def _compare(kind: str, classifier: str, count: int, size: int, pairs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        items = measure_in_fresh_process(
            "bench.classification:prepare_images", folder=folder, count=count, size=size
        )["result"]["items"]
        if len(items) != count:
            raise RuntimeError(f"asked for {count} images, prepared {len(items)}")

        def rate(target: str) -> float:
            return measure_in_fresh_process(target, folder=folder, items=items, classifier=classifier)[
                "result"
            ]

        return alternating_pairs(
            lambda: rate(f"bench.classification:project_{kind}"),
            lambda: rate(f"bench.classification:peer_{kind}"),
            pairs,
        )


def training_against_library(classifier: str, count: int, size: int, pairs: int) -> dict[str, Any]:
    from skingenbench.services.core.classifiers.models import ARCHITECTURES

    builder = ARCHITECTURES[classifier]
    return {
        "unit": f"training images per CPU second ({EPOCHS} epochs, batch {BATCH}, SGD, tiny profile sizes); "
        "ratio = project / peer",
        "images": count,
        "stored_images": f"{size}x{size} PNG, decoded once before the timed part",
        "peer": f"{builder.builder} {builder.model_name} + torch.optim.SGD + torchvision RandomResizedCrop/flip",
        "project_over_library_loop": _compare("in_memory", classifier, count, size, pairs),
        "goal": 0.95,
    }


def training_from_store(classifier: str, count: int, size: int, pairs: int) -> dict[str, Any]:
    return {
        "unit": f"training images per CPU second ({EPOCHS} epochs, batch {BATCH}, SGD); ratio = project / peer",
        "images": count,
        "stored_images": f"{size}x{size} PNG, read and decoded from the store every epoch",
        "checkpoints": f"{EPOCHS - 1} (after every epoch but the last) + the final model, on both sides",
        "project": "train_classifier + ManifestImages + ResumeState(checkpoint_every_s=0) + classifier_to_bytes",
        "peer": "the library loop decoding with PIL from the same store, torch.save of model + optimiser",
        "project_over_library_loop": _compare("from_store", classifier, count, size, pairs),
        "goal": 0.95,
    }


def run(quick: bool = False) -> dict[str, Any]:
    import torch
    from skingenbench.services.classification.core.training import measure_training_speed
    from skingenbench.services.core.classifiers.models import CLASSIFIERS
    from skingenbench.services.core.device import describe_device

    profile = "paper" if torch.cuda.is_available() else "tiny"
    names = CLASSIFIERS.names() if profile == "paper" and not quick else ["resnet18", "efficientnet_b0"]
    cnn, vit = 48, 16
    return {
        "device": describe_device(),
        "profile": profile,
        "against_library_loop": {
            "resnet18": training_against_library("resnet18", cnn, 64, 5),
            "vit_base_patch16_224": training_against_library("vit_base_patch16_224", vit, 72, 5),
        },
        "from_store_with_checkpoints": {"resnet18": training_from_store("resnet18", cnn, 64, 5)},
        "train_images_per_s": {
            name: round(float(measure_training_speed(name, profile)), 2) for name in names
        },
    }
