"""``skingenbench generate``: draw synthetic images from a trained generator over gRPC.

    skingenbench generate --model ddpm --count 16 --seed 0 --out synthetic/ --sampler ddim --steps 50

The images come from a running generation service (``--target``, default $SKINGENBENCH_GENERATION_TARGET,
else 127.0.0.1:$SKINGENBENCH_GENERATION_PORT as ``skingenbench up`` uses, port default 50052); this
process needs no torch. Image i is drawn with seed S + i and written as
``seed-<S+i, six digits>.png``, so the same command writes the same files. ``--to-store`` writes a
manifest into the service's store instead; ``--list-models`` shows the trained models.

A conditional model takes what to draw: ``--label MEL`` (class-conditional StyleGAN2-ADA, DermGAN) and,
for DermGAN, ``--size 0.15 --center 0.5 0.5 --ita -20`` or ``--balance-skin-tone``.

    skingenbench generate controllability --model dermgan --ita -40 0 40 --repeats 2

runs the controllability job (requested vs measured lesion size, centre and skin tone) and prints its report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from skingenbench.cli.errors import JobEnded, UserError, service_error
from skingenbench.cli.options import add_output_arguments, print_json
from skingenbench.cli.tls import add_tls_arguments, client_tls


def _target(args: argparse.Namespace) -> str:
    """``--target``, else what the local stack's ``up`` uses: $SKINGENBENCH_GENERATION_TARGET, else
    127.0.0.1:$SKINGENBENCH_GENERATION_PORT (default 50052)."""
    from skingenbench.cli.stack import target_for

    return args.target or target_for("generation")


def _list_models(client, as_json: bool = False) -> int:
    rows = client.list_models()
    if as_json:
        print_json(
            [
                {
                    "model_uri": m.model_uri,
                    "generator": m.generator,
                    "profile": m.profile,
                    "classes": list(m.classes),
                    "step": m.step,
                    "complete": m.complete,
                    "name": m.name,
                }
                for m in rows
            ]
        )
        return 0
    if not rows:
        print(
            "no trained models in the store (train one with "
            "`skingenbench train generator ddpm --manifest TRAIN_MANIFEST_URI`)"
        )
    for model in rows:
        state = "complete" if model.complete else "training/interrupted"
        label = f" name={model.name}" if model.name else ""
        print(
            f"{model.model_uri}\n  {model.generator} ({model.profile}) on {'+'.join(model.classes)}, "
            f"step {model.step}, {state}{label}"
        )
    return 0


def _generate_files(client, args: argparse.Namespace) -> int:
    from skingenbench.cli.progress import JobProgress

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {args.out!r} is a file", "give a folder for the PNGs")
    bar = JobProgress("generate", plain=args.plain or None)
    files, model_uri = [], ""
    for uri, images in client.iter_generate(
        args.model,
        args.count,
        args.seed,
        sampler=args.sampler,
        steps=args.steps,
        eta=args.eta,
        batch_size=args.batch_size,
        chunk=args.chunk,
        timeout_s=args.timeout or None,
        conditioning=_conditioning(args),
    ):
        model_uri = uri
        # Created only once the service has answered with images: a wrong --model leaves nothing behind.
        out.mkdir(parents=True, exist_ok=True)
        for image in images:
            path = out / f"seed-{image.seed:06d}.png"
            path.write_bytes(image.png)
            files.append(
                {
                    "file": path.name,
                    "seed": image.seed,
                    "label": image.label,
                    "conditioning": json.loads(image.conditioning_json or "{}"),
                    "sha256": hashlib.sha256(image.png).hexdigest(),
                }
            )
        bar.count(len(files), args.count, f"{len(files)} images")
    bar.close()
    record = {
        "model_uri": model_uri,
        "count": args.count,
        "seed": args.seed,
        "sampler": {
            "sampler": args.sampler,
            "steps": args.steps,
            "eta": args.eta,
            "batch_size": args.batch_size,
        },
        "target": client.target,
        "images": files,
    }
    (out / "generation.json").write_text(json.dumps(record, indent=1))
    if args.json:
        print_json({"out": str(out.resolve()), "model_uri": model_uri, "count": len(files)})
    else:
        print(f"wrote {len(files)} images to {out} (model {model_uri})")
    return 0


def _conditioning(args: argparse.Namespace) -> dict:
    """The Conditioning fields given on the command line (none: the model's own class)."""
    given = {
        "label": args.label,
        "lesion_area_fraction": args.size,
        "ita_degrees": args.ita,
        "balance_skin_tone": args.balance_skin_tone or None,
    }
    if args.center:
        given["center_x"], given["center_y"] = args.center
    return {key: value for key, value in given.items() if value not in (None, "")}


def _cmd_controllability(args: argparse.Namespace) -> int:
    import grpc

    from skingenbench.cli.progress import JobProgress
    from skingenbench.services.generation.client import GenerationClient, JobFailed

    centres = [tuple(args.center)] if args.center else []
    bar = JobProgress("controllability", plain=args.plain or None)
    target = _target(args)
    try:
        with GenerationClient(target, args.token or None, tls=client_tls(args)) as client:
            job = client.controllability(
                args.model,
                labels=args.labels,
                lesion_area_fractions=args.sizes,
                ita_degrees=args.ita,
                centres=centres,
                repeats=args.repeats,
                seed=args.seed,
                on_event=bar.update,
                timeout_s=args.timeout or None,
            )
    except grpc.RpcError as exc:
        raise service_error("generation", target, exc) from exc
    except JobFailed as exc:
        raise JobEnded(exc.job) from exc
    finally:
        bar.close()
    outputs = {o.name: o.uri for o in job.outputs}
    summary = json.loads(job.result_json or "{}")
    if args.json:
        print_json({"job_id": job.job_id, "outputs": outputs, "result": summary})
        return 0
    for name in ("lesion_area_fraction", "center_x", "center_y", "ita_degrees"):
        mae, r = summary.get(f"{name}_mae"), summary.get(f"{name}_pearson")
        print(
            f"{name:22s} MAE {'n/a' if mae is None else f'{mae:.4g}':>8}   Pearson r "
            f"{'n/a' if r is None else f'{r:.3f}'}"
        )
    print(f"report:   {outputs.get('report_md', '')}\nmanifest: {outputs.get('manifest', '')}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    import grpc

    from skingenbench.services.generation.client import GenerationClient

    if not args.list_models:
        if args.count <= 0:
            raise UserError("--count must be >= 1", "e.g. --count 16")
        if not args.to_store and not args.out:
            raise UserError("--out DIR is required (or --to-store)", "e.g. --out synthetic/")
    target = _target(args)
    try:
        with GenerationClient(target, args.token or None, tls=client_tls(args)) as client:
            if args.list_models:
                return _list_models(client, args.json)
            if args.to_store:
                model_uri, ref = client.generate_to_store(
                    args.model,
                    args.count,
                    args.seed,
                    sampler=args.sampler,
                    steps=args.steps,
                    eta=args.eta,
                    batch_size=args.batch_size,
                    timeout_s=args.timeout or None,
                    conditioning=_conditioning(args),
                )
                if args.json:
                    print_json(
                        {
                            "manifest": {"uri": ref.uri, "sha256": ref.sha256, "item_count": ref.item_count},
                            "model_uri": model_uri,
                        }
                    )
                    return 0
                print(
                    f"manifest: {ref.uri}\nsha256:   {ref.sha256}\nitems:    {ref.item_count}\n"
                    f"model:    {model_uri}"
                )
                return 0
            return _generate_files(client, args)
    except grpc.RpcError as exc:
        raise service_error("generation", target, exc) from exc


def register(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser(
        "generate",
        help="draw synthetic images from a trained generator (gRPC)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.add_argument(
        "--model",
        default="ddpm",
        help="a trained model's URI, a generator name (its newest complete model) or a run name",
    )
    generate.add_argument("--count", type=int, default=0, help="number of images")
    generate.add_argument("--seed", type=int, default=0, help="image i gets seed + i")
    generate.add_argument("--out", default="", help="folder for the PNGs and generation.json")
    generate.add_argument(
        "--sampler", default="", help="ddpm, ddim or dpm_solver for diffusion models (default: the model's)"
    )
    generate.add_argument("--steps", type=int, default=0, help="sampling steps (0: the model's default)")
    generate.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    generate.add_argument("--batch-size", type=int, default=0, help="images per forward pass on the server")
    generate.add_argument("--chunk", type=int, default=16, help="images per Generate call (at most 64)")
    generate.add_argument(
        "--target",
        default="",
        help="host:port of the generation service (default: $SKINGENBENCH_GENERATION_TARGET, else "
        "127.0.0.1:$SKINGENBENCH_GENERATION_PORT, as `skingenbench up` uses; port default 50052)",
    )
    generate.add_argument("--token", default="", help="bearer token (default: $SKINGENBENCH_AUTH_TOKEN)")
    add_tls_arguments(generate)
    generate.add_argument("--timeout", type=float, default=0.0, help="deadline per call in seconds (0: none)")
    generate.add_argument("--to-store", action="store_true", help="write a manifest into the store instead")
    generate.add_argument("--list-models", action="store_true", help="list trained models and exit")
    add_output_arguments(generate)
    conditioning = generate.add_argument_group("conditioning (conditional models)")
    conditioning.add_argument("--label", default="", help="class to draw: NV, BCC, BKL, MEL or SCC")
    conditioning.add_argument(
        "--size", type=float, default=None, help="DermGAN: lesion area fraction (0..0.95]"
    )
    conditioning.add_argument(
        "--center",
        type=float,
        nargs=2,
        metavar=("X", "Y"),
        default=None,
        help="DermGAN: lesion centre as fractions of width and height",
    )
    conditioning.add_argument("--ita", type=float, default=None, help="DermGAN: skin tone as ITA degrees")
    conditioning.add_argument(
        "--balance-skin-tone",
        action="store_true",
        help="DermGAN: draw tones uniformly over the six ITA categories",
    )
    generate.set_defaults(func=_cmd_generate)

    actions = generate.add_subparsers(dest="action", metavar="{controllability}")
    control = actions.add_parser(
        "controllability",
        help="requested vs measured lesion size, centre and skin tone "
        "of a conditional model (a job on the service)",
    )
    control.add_argument(
        "--model", default="dermgan", help="a trained model's URI, a generator or a run name"
    )
    control.add_argument("--labels", nargs="*", default=[], help="classes (default: the model's)")
    control.add_argument(
        "--sizes", type=float, nargs="*", default=[], help="lesion area fractions (default 0.05 0.12 0.25)"
    )
    control.add_argument(
        "--ita",
        type=float,
        nargs="*",
        default=[],
        help="skin tones in ITA degrees (default: one per ITA category, dark to very light)",
    )
    control.add_argument(
        "--center",
        type=float,
        nargs=2,
        metavar=("X", "Y"),
        default=None,
        help="one lesion centre (default: two off-centre positions)",
    )
    control.add_argument("--repeats", type=int, default=0, help="images per combination (default 2)")
    control.add_argument("--seed", type=int, default=0, help="image i gets seed + i")
    control.add_argument("--target", default="", help="host:port of the generation service")
    control.add_argument("--token", default="", help="bearer token (default: $SKINGENBENCH_AUTH_TOKEN)")
    add_tls_arguments(control)
    control.add_argument(
        "--timeout", type=float, default=0.0, help="seconds to wait for the job (0: no limit)"
    )
    add_output_arguments(control)
    control.set_defaults(func=_cmd_controllability)


def main(argv: list[str] | None = None) -> int:
    """Run ``generate`` on its own (``python -m skingenbench.cli.generate ...``), errors answered as
    the ``skingenbench`` command answers them."""
    from skingenbench.cli import main as cli_main

    return cli_main(["generate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
