"""``skingenbench generate``: draw synthetic images from a trained generator over gRPC.

    skingenbench generate --model ddpm --count 16 --seed 0 --out synthetic/ --sampler ddim --steps 50

The images come from a running generation service (``--target``, default $SKINGENBENCH_GENERATION_TARGET
or 127.0.0.1:50052); this process needs no torch. Image i is drawn with seed S + i and written as
``seed-<S+i, six digits>.png``, so the same command writes the same files. ``--to-store`` writes a
manifest into the service's store instead; ``--list-models`` shows the trained models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path


class ProgressBar:
    """``generate [#######.............] 12/32  3.4 img/s  ETA 6s`` on stderr, redrawn in place."""

    def __init__(self, total: int, label: str = "generate", width: int = 28, stream=None) -> None:
        self.total, self.label, self.width = total, label, width
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = done / elapsed
        filled = int(self.width * done / self.total) if self.total else self.width
        eta = f"ETA {(self.total - done) / rate:.0f}s" if 0 < done < self.total else f"{elapsed:.1f}s"
        print(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total}  "
              f"{rate:.2f} img/s  {eta}   ", end="", file=self.stream, flush=True)
        if done >= self.total:
            print(file=self.stream, flush=True)


def _list_models(client) -> int:
    rows = client.list_models()
    if not rows:
        print("no trained models in the store (train one with StartTraining)")
    for model in rows:
        state = "complete" if model.complete else "training/interrupted"
        label = f" name={model.name}" if model.name else ""
        print(f"{model.model_uri}\n  {model.generator} ({model.profile}) on {'+'.join(model.classes)}, "
              f"step {model.step}, {state}{label}")
    return 0


def _generate_files(client, args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bar = ProgressBar(args.count)
    bar.update(0)
    files, model_uri = [], ""
    for uri, images in client.iter_generate(args.model, args.count, args.seed, sampler=args.sampler,
                                             steps=args.steps, eta=args.eta, batch_size=args.batch_size,
                                             chunk=args.chunk, timeout_s=args.timeout or None):
        model_uri = uri
        for image in images:
            path = out / f"seed-{image.seed:06d}.png"
            path.write_bytes(image.png)
            files.append({"file": path.name, "seed": image.seed, "label": image.label,
                          "sha256": hashlib.sha256(image.png).hexdigest()})
        bar.update(len(files))
    record = {"model_uri": model_uri, "count": args.count, "seed": args.seed,
              "sampler": {"sampler": args.sampler, "steps": args.steps, "eta": args.eta,
                          "batch_size": args.batch_size}, "target": client.target, "images": files}
    (out / "generation.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {len(files)} images to {out} (model {model_uri})")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    import grpc

    from services.generation.client import GenerationClient, rpc_error_text

    try:
        with GenerationClient(args.target, args.token or None) as client:
            if args.list_models:
                return _list_models(client)
            if args.count <= 0:
                print("error: --count must be >= 1", file=sys.stderr)
                return 2
            if args.to_store:
                model_uri, ref = client.generate_to_store(
                    args.model, args.count, args.seed, sampler=args.sampler, steps=args.steps, eta=args.eta,
                    batch_size=args.batch_size, timeout_s=args.timeout or None)
                print(f"manifest: {ref.uri}\nsha256:   {ref.sha256}\nitems:    {ref.item_count}\n"
                      f"model:    {model_uri}")
                return 0
            if not args.out:
                print("error: --out DIR is required (or --to-store)", file=sys.stderr)
                return 2
            return _generate_files(client, args)
    except grpc.RpcError as exc:
        print(f"\nerror: {rpc_error_text(exc)}", file=sys.stderr)
        return 2


def register(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser("generate", help="draw synthetic images from a trained generator (gRPC)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    generate.add_argument("--model", default="ddpm",
                          help="a trained model's URI, a generator name (its newest complete model) or a "
                               "run name")
    generate.add_argument("--count", type=int, default=0, help="number of images")
    generate.add_argument("--seed", type=int, default=0, help="image i gets seed + i")
    generate.add_argument("--out", default="", help="folder for the PNGs and generation.json")
    generate.add_argument("--sampler", default="",
                          help="ddpm or ddim for diffusion models (default: the model's)")
    generate.add_argument("--steps", type=int, default=0, help="sampling steps (0: the model's default)")
    generate.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    generate.add_argument("--batch-size", type=int, default=0, help="images per forward pass on the server")
    generate.add_argument("--chunk", type=int, default=16, help="images per Generate call (at most 64)")
    generate.add_argument("--target", default="", help="host:port of the generation service (default: "
                          "$SKINGENBENCH_GENERATION_TARGET or 127.0.0.1:50052)")
    generate.add_argument("--token", default="", help="bearer token (default: $SKINGENBENCH_AUTH_TOKEN)")
    generate.add_argument("--timeout", type=float, default=0.0, help="deadline per call in seconds (0: none)")
    generate.add_argument("--to-store", action="store_true", help="write a manifest into the store instead")
    generate.add_argument("--list-models", action="store_true", help="list trained models and exit")
    generate.set_defaults(func=_cmd_generate)


def main(argv: list[str] | None = None) -> int:
    """Run ``generate`` on its own (``python -m skingenbench.cli_generate ...``)."""
    parser = argparse.ArgumentParser(prog="skingenbench")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["generate", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
