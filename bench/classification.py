"""Classifier training benchmarks (issue 20, item 3).

- **The training core against a minimal timm + SGD loop**: the project's ``train_classifier`` as the
  training job runs it (images decoded from the store through ``ManifestImages``, its resumable state
  through ``ResumeState`` at the job's interval, the best model written to the store at the end) against
  the loop a user would write (the same timm model, SGD, decode with PIL from the same store, random crop +
  flip with torchvision, ``torch.save`` at the end). Same images, batch size, epochs and threads; each side
  in a fresh process, alternately; images per CPU second; ratio = project / peer.
- Training images/s per registered model (tiny on CPU; the paper profile with AMP and channels_last on a
  GPU), as before.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from bench.fresh import alternating_pairs, measure_in_fresh_process

OVERRIDES = {"pretrained": "none", "optimizer": "sgd", "lr": 0.01, "epochs": 2, "batch_size": 16}


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


def project_training(folder: str, items: list[dict], classifier: str) -> float:
    """Fresh-process child: images per CPU second of the training core as the training job drives it."""
    from skingenbench.services.classification.core.training import train_classifier
    from skingenbench.services.classification.manifest_images import ManifestImages
    from skingenbench.services.classification.training_job import CHECKPOINT_EVERY_S, ResumeState
    from skingenbench.services.core.classifiers.checkpoint import classifier_to_bytes
    from skingenbench.services.core.classifiers.models import create_classifier
    from skingenbench.services.core.manifest import Item
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(folder)
    records = [Item.from_dict(item) for item in items]
    model, _, config = create_classifier(classifier, "tiny", OVERRIDES)
    state = ResumeState(store, "bench-project")
    started = time.process_time()
    outcome = train_classifier(
        model,
        config,
        ManifestImages(store, records),
        ManifestImages(store, records[:2]),
        seed=0,
        save_checkpoint=state.save,
        load_checkpoint=state.load,
        checkpoint_every_s=CHECKPOINT_EVERY_S,
    )
    model_bytes = classifier_to_bytes(outcome.best_state, classifier, config, {})
    store.put_bytes("bench-project/model.safetensors", model_bytes)
    seconds = time.process_time() - started
    return len(records) * config.epochs / seconds


def peer_training(folder: str, items: list[dict], classifier: str) -> float:
    """Fresh-process child: the same training as a user's minimal timm + SGD loop."""
    import io

    import numpy as np
    import timm
    import torch
    import torch.nn.functional as F
    import torchvision.transforms.v2 as T
    from PIL import Image
    from skingenbench.services.core.classifiers.models import create_classifier
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(folder)
    _, _, config = create_classifier(classifier, "tiny", OVERRIDES)  # only its sizes: the model is timm's
    kwargs = {"img_size": config.image_size} if classifier.startswith("vit") else {}
    model = timm.create_model(classifier, pretrained=False, num_classes=5, **kwargs)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    augment = T.Compose(
        [
            T.RandomResizedCrop(config.image_size, scale=config.crop_scale, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(config.mean, config.std),
        ]
    )
    classes = {"NV": 0, "BCC": 1, "BKL": 2, "MEL": 3, "SCC": 4}
    started = time.process_time()
    for epoch in range(config.epochs):
        model.train()
        order = np.random.default_rng(epoch).permutation(len(items))
        for start in range(0, len(order), config.batch_size):
            batch = [items[i] for i in order[start : start + config.batch_size]]
            images = torch.stack(
                [
                    augment(
                        torch.from_numpy(
                            np.asarray(Image.open(io.BytesIO(store.get_bytes(item["key"]))).convert("RGB"))
                        ).permute(2, 0, 1)
                    )
                    for item in batch
                ]
            )
            labels = torch.tensor([classes[item["label"]] for item in batch])
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    store.put_bytes("bench-peer/model.pt", buffer.getvalue())
    seconds = time.process_time() - started
    return len(items) * config.epochs / seconds


def training_against_timm(classifier: str, count: int, size: int, pairs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        items = measure_in_fresh_process(
            "bench.classification:prepare_images", folder=folder, count=count, size=size
        )["result"]["items"]

        def rate(target: str) -> float:
            return measure_in_fresh_process(target, folder=folder, items=items, classifier=classifier)[
                "result"
            ]

        summary = alternating_pairs(
            lambda: rate("bench.classification:project_training"),
            lambda: rate("bench.classification:peer_training"),
            pairs,
        )
    return {
        "unit": "training images per CPU second (2 epochs, batch 16, SGD, tiny profile sizes); ratio = project / peer",
        "images": count,
        "stored_images": f"{size}x{size} PNG",
        "peer": "timm.create_model + torch.optim.SGD + torchvision RandomResizedCrop/flip, PIL decode from the store",
        "project_over_timm_loop": summary,
        "goal": 0.95,
    }


def run(quick: bool = False) -> dict[str, Any]:
    import torch
    from skingenbench.services.classification.core.training import measure_training_speed
    from skingenbench.services.core.classifiers.models import CLASSIFIERS
    from skingenbench.services.core.device import describe_device

    profile = "paper" if torch.cuda.is_available() else "tiny"
    names = ["resnet18", "efficientnet_b0"] if quick else CLASSIFIERS.names()
    pairs = 3 if quick else 5
    return {
        "device": describe_device(),
        "profile": profile,
        "against_timm_loop": {
            "resnet18": training_against_timm("resnet18", 32 if quick else 64, 64, pairs),
            "vit_base_patch16_224": training_against_timm(
                "vit_base_patch16_224", 16 if quick else 32, 72, pairs
            ),
        },
        "train_images_per_s": {
            name: round(float(measure_training_speed(name, profile)), 2) for name in names
        },
    }
