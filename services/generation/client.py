"""A small Python client of the generation service, for the CLI and for other tools.

    from skingenbench.services.generation.client import GenerationClient

    with GenerationClient("127.0.0.1:50052") as client:
        images = client.generate("ddpm", count=8, seed=0, sampler="ddim", steps=50)  # PIL images

Over TLS: ``GenerationClient(target, tls=ClientTls(ca="ca.pem"))`` (or ``SKINGENBENCH_TLS_CA``).

It needs only grpcio, numpy and Pillow (no torch): the model runs on the server. Image i of a request
has seed ``seed + i``, so ``generate`` splits a large count into several inline calls (``chunk`` images
each, pinned to the model the first call resolved) and still returns exactly the images one call would.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from skingenbench.services.platform.client import describe_end, open_channel, watch_job
from skingenbench.services.platform.tls import ClientTls

from skingenbench.api.v1 import common_pb2, generation_pb2, generation_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50052"
INLINE_MAX_IMAGES = 64  # the server's inline cap (Generate returns RESOURCE_EXHAUSTED above it)


def default_target() -> str:
    return os.environ.get("SKINGENBENCH_GENERATION_TARGET", DEFAULT_TARGET)


class JobFailed(RuntimeError):
    """A training or sampling job ended FAILED, CANCELLED or INTERRUPTED (its server stopped; it resumes
    there on the next start); ``job`` is the final Job message."""

    def __init__(self, job: common_pb2.Job) -> None:
        super().__init__(describe_end(job))
        self.job = job


def decode_png(png: bytes, as_: str = "pil") -> Any:
    """PNG bytes as a PIL image (``pil``), a uint8 [H, W, 3] array (``numpy``) or unchanged (``png``)."""
    if as_ == "png":
        return png
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if as_ == "pil":
        return image
    if as_ == "numpy":
        import numpy as np

        return np.asarray(image)
    raise ValueError(f"as_ must be 'pil', 'numpy' or 'png', got {as_!r}")


def _sampler(sampler: str, steps: int, eta: float, batch_size: int) -> generation_pb2.SamplerOptions:
    return generation_pb2.SamplerOptions(sampler=sampler, steps=steps, eta=eta, batch_size=batch_size)


def conditioning_message(conditioning: dict[str, Any] | None) -> generation_pb2.Conditioning | None:
    """A Conditioning from a dict such as ``{"label": "MEL", "lesion_area_fraction": 0.2, "ita_degrees": 10}``
    (DermGAN); unknown keys raise ValueError naming the known ones."""
    if not conditioning:
        return None
    known = set(generation_pb2.Conditioning.DESCRIPTOR.fields_by_name)
    unknown = sorted(set(conditioning) - known)
    if unknown:
        raise ValueError(
            f"unknown conditioning key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return generation_pb2.Conditioning(**conditioning)


def _manifest_ref(manifest: str | common_pb2.ManifestRef) -> common_pb2.ManifestRef:
    return manifest if isinstance(manifest, common_pb2.ManifestRef) else common_pb2.ManifestRef(uri=manifest)


class GenerationClient:
    """Calls of ``skingenbench.v1.Generation``; gRPC errors propagate as ``grpc.RpcError``."""

    def __init__(
        self,
        target: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float | None = None,
        max_message_mb: int = 64,
        tls: ClientTls | None = None,
    ) -> None:
        """``token`` and ``tls`` (a CA bundle, and a client certificate for mutual TLS) default to the
        environment (``SKINGENBENCH_AUTH_TOKEN``, ``SKINGENBENCH_TLS_CA`` ...)."""
        self.target = target or default_target()
        self.timeout_s = timeout_s
        self.channel = open_channel(self.target, token, max_message_mb, tls=tls)
        self.stub = generation_pb2_grpc.GenerationStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GenerationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what is there ------------------------------------------------------------------------------------
    def generators(self) -> list[common_pb2.RegistryEntry]:
        return list(self.stub.ListModels(common_pb2.ListRegistryRequest(), timeout=self.timeout_s).entries)

    def list_models(self, generator: str = "") -> list[generation_pb2.TrainedModel]:
        """Trained models in the store (complete or not), most recently updated first."""
        request = generation_pb2.ListTrainedModelsRequest(generator=generator)
        return list(self.stub.ListTrainedModels(request, timeout=self.timeout_s).models)

    # -- jobs ----------------------------------------------------------------------------------------------
    def train(
        self,
        manifest: str | common_pb2.ManifestRef,
        *,
        generator: str = "ddpm",
        profile: str = "paper",
        config: dict[str, Any] | None = None,
        classes: Sequence[str] = ("MEL",),
        seed: int = 0,
        name: str = "",
        init_checkpoint: str = "",
        wait: bool = True,
        on_event: Callable[[common_pb2.ProgressEvent], None] | None = None,
        timeout_s: float | None = None,
    ) -> common_pb2.Job:
        """Start training on a train-only manifest; with ``wait`` follow it and return the finished job.

        The model record is the job's output ``model`` (``{o.name: o for o in job.outputs}["model"].uri``).
        """
        request = generation_pb2.TrainGeneratorRequest(
            generator=generator,
            profile=profile,
            train=_manifest_ref(manifest),
            classes=list(classes),
            seed=seed,
            name=name,
            config_json=json.dumps(config, sort_keys=True) if config else "",
        )
        if init_checkpoint:
            request.init_checkpoint.uri = init_checkpoint
        job = self.stub.StartTraining(request, timeout=self.timeout_s)
        return self._follow(job, wait, on_event, timeout_s)

    def sample_to_store(
        self,
        model: str,
        count: int,
        seed: int = 0,
        *,
        sampler: str = "",
        steps: int = 0,
        eta: float = 0.0,
        batch_size: int = 0,
        wait: bool = True,
        on_event: Callable[[common_pb2.ProgressEvent], None] | None = None,
        timeout_s: float | None = None,
    ) -> common_pb2.Job:
        """A StartSampling job; with ``wait`` the finished job, whose output ``manifest`` lists the PNGs."""
        request = generation_pb2.SampleRequest(
            model_uri=model, count=count, seed=seed, sampler=_sampler(sampler, steps, eta, batch_size)
        )
        job = self.stub.StartSampling(request, timeout=self.timeout_s)
        return self._follow(job, wait, on_event, timeout_s)

    def controllability(
        self,
        model: str,
        *,
        labels: Sequence[str] = (),
        lesion_area_fractions: Sequence[float] = (),
        ita_degrees: Sequence[float] = (),
        centres: Sequence[tuple[float, float]] = (),
        repeats: int = 0,
        seed: int = 0,
        wait: bool = True,
        on_event: Callable[[common_pb2.ProgressEvent], None] | None = None,
        timeout_s: float | None = None,
    ) -> common_pb2.Job:
        """A StartControllability job over labels x sizes x tones x centres (empty: the server's defaults);
        with ``wait`` the finished job, whose outputs ``report_md``, ``report_json`` and ``manifest`` hold
        requested vs measured per attribute."""
        request = generation_pb2.ControllabilityRequest(
            model_uri=model,
            labels=list(labels),
            lesion_area_fractions=list(lesion_area_fractions),
            ita_degrees=list(ita_degrees),
            centres=[generation_pb2.LesionCentre(x=x, y=y) for x, y in centres],
            repeats=repeats,
            seed=seed,
        )
        job = self.stub.StartControllability(request, timeout=self.timeout_s)
        return self._follow(job, wait, on_event, timeout_s)

    def _follow(self, job: common_pb2.Job, wait: bool, on_event, timeout_s: float | None) -> common_pb2.Job:
        if not wait:
            return job
        final = watch_job(self.channel, job.job_id, on_event, timeout_s)
        if final.state != common_pb2.JOB_STATE_SUCCEEDED:
            raise JobFailed(final)
        return final

    # -- synchronous generation --------------------------------------------------------------------------
    def iter_generate(
        self,
        model: str,
        count: int,
        seed: int = 0,
        *,
        sampler: str = "",
        steps: int = 0,
        eta: float = 0.0,
        batch_size: int = 0,
        chunk: int = 16,
        timeout_s: float | None = None,
        conditioning: dict[str, Any] | None = None,
    ) -> Iterator[tuple[str, list[generation_pb2.GeneratedImage]]]:
        """(model_uri, images) per inline call of at most ``chunk`` images; the caller shows progress."""
        if count <= 0:
            raise ValueError(f"count must be >= 1, got {count}")
        chunk = max(1, min(chunk, INLINE_MAX_IMAGES))
        options = _sampler(sampler, steps, eta, batch_size)
        condition = conditioning_message(conditioning)
        done = 0
        while done < count:
            size = min(chunk, count - done)
            request = generation_pb2.GenerateRequest(
                model=model, count=size, seed=seed + done, sampler=options, conditioning=condition
            )
            reply = self.stub.Generate(request, timeout=timeout_s or self.timeout_s)
            model = reply.model_uri  # later chunks use the very model the first one resolved
            done += size
            yield reply.model_uri, list(reply.images)

    def generate(
        self,
        model: str,
        count: int,
        seed: int = 0,
        *,
        sampler: str = "",
        steps: int = 0,
        eta: float = 0.0,
        batch_size: int = 0,
        as_: str = "pil",
        timeout_s: float | None = None,
        conditioning: dict[str, Any] | None = None,
    ) -> list[Any]:
        """``count`` images (PIL by default; ``as_="numpy"`` or ``"png"``), image i drawn with seed + i.

        ``conditioning`` asks a conditional generator for a lesion, e.g. ``{"label": "MEL",
        "lesion_area_fraction": 0.2, "center_x": 0.5, "center_y": 0.5, "ita_degrees": -20}``."""
        images: list[Any] = []
        for _, chunk in self.iter_generate(
            model,
            count,
            seed,
            sampler=sampler,
            steps=steps,
            eta=eta,
            batch_size=batch_size,
            chunk=INLINE_MAX_IMAGES,
            timeout_s=timeout_s,
            conditioning=conditioning,
        ):
            images += [decode_png(image.png, as_) for image in chunk]
        return images

    def generate_to_store(
        self,
        model: str,
        count: int,
        seed: int = 0,
        *,
        sampler: str = "",
        steps: int = 0,
        eta: float = 0.0,
        batch_size: int = 0,
        timeout_s: float | None = None,
        conditioning: dict[str, Any] | None = None,
    ) -> tuple[str, common_pb2.ManifestRef]:
        """Synchronous generation into the store: (model_uri, manifest reference)."""
        request = generation_pb2.GenerateRequest(
            model=model,
            count=count,
            seed=seed,
            sampler=_sampler(sampler, steps, eta, batch_size),
            output=generation_pb2.OUTPUT_MODE_STORE,
            conditioning=conditioning_message(conditioning),
        )
        reply = self.stub.Generate(request, timeout=timeout_s or self.timeout_s)
        return reply.model_uri, reply.manifest


def rpc_error_text(exc: grpc.RpcError) -> str:
    """``CODE: message`` of a failed call, for command lines and logs."""
    code = exc.code() if hasattr(exc, "code") else None
    return f"{code.name if code else 'ERROR'}: {exc.details() if hasattr(exc, 'details') else exc}"
