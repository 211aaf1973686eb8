"""``skingenbench data …`` and ``skingenbench preprocess …``: the data and preprocessing cores,
run in this process on the configured store (no services needed)."""

from __future__ import annotations

import argparse
import json

from skingenbench.cli.errors import require_manifest_uri
from skingenbench.services.core.classes import REFERENCE_PROPORTIONS


def _store(args: argparse.Namespace):
    import os

    from skingenbench.cli import stack
    from skingenbench.services.platform.store import store_from_uri

    # The store `skingenbench up` gives its services (SKINGENBENCH_STORE, else the home's store folder),
    # so a manifest imported here is one the running services can read.
    return store_from_uri(
        args.store or os.environ.get("SKINGENBENCH_STORE") or (stack.home() / "store").as_uri()
    )


def _progress(label: str):
    """A ``(done, total, message)`` callback: a live bar on a terminal, a line per tenth in logs."""
    from skingenbench.cli.progress import JobProgress

    display = JobProgress(label)

    def report(done: int, total: int, message: str = "") -> None:
        display.count(done, total, message[:40])
        if total and done >= total:
            display.close()

    return report


def _print_outcome(outcome) -> None:
    print(f"manifest: {outcome.ref.uri}\nsha256:   {outcome.ref.sha256}\nitems:    {outcome.ref.item_count}")
    if outcome.report_keys[1]:
        print(f"report:   {outcome.report_keys[1]} (in the store)")


def _cmd_phantom(args: argparse.Namespace) -> int:
    from skingenbench.services.data.core.phantom_dataset import write_phantom_dataset

    width, height = _size(args.size)
    progress = _progress("phantom")
    info = write_phantom_dataset(
        args.out, args.count, width=width, height=height, seed=args.seed, progress=lambda d, t: progress(d, t)
    )
    print(
        f"wrote {info.image_count} images of {info.lesion_count} lesions ({width}x{height}) to {info.out_dir}"
    )
    print("classes: " + ", ".join(f"{k} {v}" for k, v in info.class_counts.items()))
    return 0


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height or width)
    except ValueError:
        raise SystemExit(f"--size must be N or WxH, got {text!r}") from None


def _cmd_import(args: argparse.Namespace) -> int:
    from skingenbench.services.data.operations import import_source

    options = {"mapping": json.loads(args.mapping)} if args.mapping else {}
    outcome = import_source(
        _store(args), args.source, args.path, options, progress=_progress(f"import {args.source}")
    )
    _print_outcome(outcome)
    dropped = outcome.report.get("dropped", {})
    if dropped:
        print("dropped: " + json.dumps(dropped, sort_keys=True)[:400])
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from skingenbench.services.data.curation_report import describe_manifest
    from skingenbench.services.data.operations import split_sources
    from skingenbench.services.platform.manifest_io import read_manifest

    store = _store(args)
    uris = [require_manifest_uri(uri) for uri in args.manifests]
    outcome = split_sources(store, [(uri, "") for uri in uris], tuple(args.fractions), args.seed)
    _print_outcome(outcome)
    print(describe_manifest(read_manifest(store, outcome.ref.uri, outcome.ref.sha256)))
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from skingenbench.services.data.curation_report import describe_manifest
    from skingenbench.services.platform.manifest_io import read_manifest

    print(describe_manifest(read_manifest(_store(args), require_manifest_uri(args.manifest))))
    return 0


def _cmd_import_folder(args: argparse.Namespace) -> int:
    from skingenbench.cli.folder_import import import_folder

    ref = import_folder(_store(args), args.path, args.label, args.split, progress=_progress("import folder"))
    print(f"manifest: {ref.uri}\nsha256:   {ref.sha256}\nitems:    {ref.item_count}")
    return 0


def _cmd_preprocess_run(args: argparse.Namespace) -> int:
    from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest

    manifest = require_manifest_uri(args.manifest)  # before anything is read: a folder is the usual mistake
    spec = PreprocessSpec(
        args.pipeline,
        args.profile,
        json.loads(args.config or "{}"),
        args.seed,
        args.augment_copies,
        tuple(args.splits or ()),
        args.max_failure_fraction,
    )
    progress = _progress(f"preprocess {args.pipeline}")
    outcome = preprocess_manifest(
        _store(args),
        manifest,
        spec,
        workers=args.workers,
        progress=lambda d, t, m: progress(d, t, f"{m.get('images_per_s', 0):.1f} img/s"),
    )
    print(f"manifest: {outcome.ref.uri}\nitems:    {outcome.processed}  skipped: {outcome.skipped}")
    return 0


def _cmd_preprocess_evaluate(args: argparse.Namespace) -> int:
    from skingenbench.services.preprocessing.quality_report import quality_markdown, quality_report

    report = quality_report(
        _store(args),
        require_manifest_uri(args.manifest),
        args.pipeline,
        args.profile,
        json.loads(args.config or "{}"),
        args.limit,
        progress=_progress("quality"),
    )
    markdown = quality_markdown(report)
    if args.out:
        from pathlib import Path

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "quality.json").write_text(json.dumps(report, indent=1))
        (out / "quality.md").write_text(markdown)
        print(f"wrote {out / 'quality.json'} and {out / 'quality.md'}")
    print(markdown)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    store_help = "store URI (default: $SKINGENBENCH_STORE, else $SKINGENBENCH_HOME/store as `up` uses)"
    data = commands.add_parser("data", help="make, import, split and describe data sets").add_subparsers(
        dest="data_command", required=True
    )

    phantom = data.add_parser("phantom", help="write a phantom data set in the HAM10000 layout")
    phantom.add_argument("--out", required=True)
    phantom.add_argument("--count", type=int, default=500)
    phantom.add_argument("--size", default="600x450", help="N or WxH (default 600x450, as HAM10000)")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.set_defaults(func=_cmd_phantom)
    proportions = ", ".join(f"{k} {v:.1%}" for k, v in REFERENCE_PROPORTIONS.items())
    phantom.description = f"Class proportions follow the reference study: {proportions}."

    for source in ("ham10000", "milk10k"):
        importer = data.add_parser(
            f"import-{source}", help=f"import a {source.upper()} folder into the store"
        )
        importer.add_argument("path", help="the folder as distributed (docs/data.md)")
        importer.add_argument("--mapping", default="", help='JSON diagnosis mapping, e.g. {"akiec": "SCC"}')
        importer.add_argument("--store", default="", help=store_help)
        importer.set_defaults(func=_cmd_import, source=source)

    folder = data.add_parser(
        "import-folder", help="import a plain folder of PNG/JPEG images (one label) into the store"
    )
    folder.add_argument("path", help="a folder of images (its subfolders are not read)")
    folder.add_argument("--label", default="MEL", help="the class of every image (default MEL)")
    folder.add_argument("--split", default="train", help="the split of every image (default train)")
    folder.add_argument("--store", default="", help=store_help)
    folder.set_defaults(func=_cmd_import_folder)

    split = data.add_parser("split", help="combine manifests and split by lesion (stratified)")
    split.add_argument("manifests", nargs="+", help="manifest URIs or keys")
    split.add_argument(
        "--fractions", type=float, nargs=3, default=[0.70, 0.15, 0.15], metavar=("TRAIN", "VAL", "TEST")
    )
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--store", default="", help=store_help)
    split.set_defaults(func=_cmd_split)

    describe = data.add_parser("describe", help="print the counts table of a manifest")
    describe.add_argument("manifest")
    describe.add_argument("--store", default="", help=store_help)
    describe.set_defaults(func=_cmd_describe)

    preprocess = commands.add_parser(
        "preprocess", help="run or evaluate preprocessing pipelines"
    ).add_subparsers(dest="preprocess_command", required=True)
    run = preprocess.add_parser("run", help="run a pipeline over a manifest")
    run.add_argument("manifest")
    run.add_argument("--pipeline", default="advanced", choices=["basic", "advanced"])
    run.add_argument("--profile", default="paper", choices=["tiny", "paper"])
    run.add_argument("--config", default="", help="JSON overrides of the profile's config")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--augment-copies", type=int, default=0)
    run.add_argument("--splits", nargs="*")
    run.add_argument("--max-failure-fraction", type=float, default=0.05)
    run.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    run.add_argument("--store", default="", help=store_help)
    run.set_defaults(func=_cmd_preprocess_run)

    evaluate = preprocess.add_parser("evaluate", help="artifact-removal quality on a phantom manifest")
    evaluate.add_argument("manifest", help="a phantom import manifest (clean images and masks)")
    evaluate.add_argument("--pipeline", default="advanced", choices=["basic", "advanced"])
    evaluate.add_argument("--profile", default="paper", choices=["tiny", "paper"])
    evaluate.add_argument("--config", default="")
    evaluate.add_argument("--limit", type=int, default=0)
    evaluate.add_argument("--out", default="", help="folder for quality.json and quality.md")
    evaluate.add_argument("--store", default="", help=store_help)
    evaluate.set_defaults(func=_cmd_preprocess_evaluate)
