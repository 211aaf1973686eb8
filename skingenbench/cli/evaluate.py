"""``skingenbench evaluate REAL SYNTHETIC…``: FID, KID, IS and precision/recall of image sets, the
torch-fidelity command line's shortcut on the running evaluation service.

    skingenbench evaluate real_images/ synthetic/ --weights weights-inception-2015-12-05-6726825d.pth

Each argument is a folder of PNG/JPEG images or a manifest URI. A folder is imported into the evaluation
service's store first (``data import-folder``: content-addressed, so a second run imports nothing), its
images labelled ``--label`` (default MEL) in the split ``train``, which is the real set's default split.
The Inception weights are a local file (``--weights``, checked by sha256) or what the service finds in
its ``SKINGENBENCH_WEIGHTS_DIR``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from skingenbench.cli.connect import Service, add_connection_arguments, job_summary, outputs
from skingenbench.cli.errors import UserError
from skingenbench.cli.options import (
    add_output_arguments,
    add_set_argument,
    local_file_ref,
    manifest_ref,
    parse_overrides,
    print_json,
)

DEFAULT_METRICS = ("fid", "kid", "isc", "prc")
SHOWN = ("count", "fid", "kid_mean", "kid_std", "isc_mean", "isc_std", "precision", "recall")


def _service_store(service: Service, store_uri: str):
    """The store the service reads (its GetServiceInfo), where a folder must be imported to."""
    from skingenbench.api.v1 import common_pb2
    from skingenbench.services.platform.store import store_from_uri

    uri = store_uri or service.call("GetServiceInfo", common_pb2.GetServiceInfoRequest()).store_uri
    return store_from_uri(uri)


def _reference(text: str, label: str, store_for, plain: bool | None):
    """(ManifestRef, was a folder) for one argument."""
    from skingenbench.cli.folder_import import import_folder
    from skingenbench.cli.progress import JobProgress

    if "://" not in text and Path(text).expanduser().is_dir():
        progress = JobProgress(f"import {Path(text).name}", plain=plain)
        ref = import_folder(store_for(), text, label, "train", progress=progress.count)
        progress.close()
        return ref, True
    return manifest_ref(text, "image set (a folder or a manifest URI)"), False


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from skingenbench.api.v1 import evaluation_pb2

    if not args.synthetic:
        raise UserError("evaluate needs a real set and at least one synthetic set", "evaluate REAL SYNTHETIC")
    options = {"profile": args.profile, **parse_overrides(args.overrides)}
    weights = local_file_ref(args.weights, "--weights") if args.weights else None
    plain = args.plain or None
    with Service.from_args("evaluation", args) as service:
        stores: list = []

        def store_for():
            if not stores:
                stores.append(_service_store(service, args.store))
            return stores[0]

        real, _ = _reference(args.real, args.label, store_for, plain)
        names: list[str] = []
        sets = []
        for text in args.synthetic:
            ref, _ = _reference(text, args.label, store_for, plain)
            name = Path(text.rstrip("/")).name.removesuffix(".json") or "synthetic"
            if name in names or name == "manifest":
                name = f"set{len(names) + 1}"
            names.append(name)
            sets.append(evaluation_pb2.SyntheticSet(name=name, manifest=ref, intended_label=args.label))
        request = evaluation_pb2.EvaluateRequest(
            real=real,
            real_splits=args.real_splits,
            real_labels=[args.label],
            synthetic=sets,
            metrics=args.metrics,
            feature_extractor=args.extractor,
            options_json=json.dumps(options, sort_keys=True),
            seed=args.seed,
        )
        if weights is not None:
            request.extractor_weights.CopyFrom(weights)
        job = service.start_and_follow("StartEvaluation", request, "evaluate", plain=plain)
    summary = json.loads(job.result_json or "{}")
    if args.json:
        print_json({**job_summary(job), "real": {"uri": real.uri, "sha256": real.sha256}})
        return 0
    _print_table(summary)
    report = outputs(job).get("report_md", {}).get("uri", "")
    print(f"report: {report}  (job {job.job_id}{', reused' if job.reused else ''})")
    for note in summary.get("notes", []) + summary.get("warnings", []):
        print(f"note: {note}")
    return 0


def _print_table(summary: dict) -> None:
    sets = summary.get("sets", {})
    columns = [c for c in SHOWN if any(c in values for values in sets.values())]
    width = max([len(n) for n in sets] + [4])
    print(f"{'set':{width}s}  " + "  ".join(f"{c:>10s}" for c in columns))
    for name, values in sets.items():
        cells = []
        for column in columns:
            value = values.get(column)
            cells.append(f"{'-' if value is None else f'{value:.4g}':>10s}")
        print(f"{name:{width}s}  " + "  ".join(cells))


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="FID/KID/IS/PRC of image folders or manifests against a real set (evaluation service)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("real", help="the real images: a folder or a manifest URI")
    evaluate.add_argument("synthetic", nargs="+", help="synthetic sets: folders or manifest URIs")
    evaluate.add_argument("--label", default="MEL", help="the class of the images (default MEL)")
    evaluate.add_argument(
        "--metrics",
        nargs="+",
        default=list(DEFAULT_METRICS),
        help="subset of fid kid isc prc domain_fid domain_kid feature_space memorization (default: fid kid isc prc)",
    )
    evaluate.add_argument(
        "--real-splits", nargs="+", default=["train"], help="splits of a real manifest (default train)"
    )
    evaluate.add_argument("--weights", default="", help="local Inception weights file (checked by sha256)")
    evaluate.add_argument("--extractor", default="", help="feature extractor (default inception-v3-compat)")
    evaluate.add_argument("--profile", default="paper", help="tiny or paper (default) metric settings")
    add_set_argument(evaluate, "metric")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--store", default="", help="where to import folders (default: the service's own store)"
    )
    add_connection_arguments(evaluate, "evaluation")
    add_output_arguments(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)
