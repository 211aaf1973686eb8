"""``skingenbench classify test|predict|gradcam``: a trained classifier's jobs on the classification service.

    skingenbench classify test    --checkpoint URI --sha256 HEX --manifest SPLIT_MANIFEST_URI
    skingenbench classify predict --checkpoint URI --manifest MANIFEST_URI --splits test
    skingenbench classify gradcam --checkpoint URI --manifest SPLIT_MANIFEST_URI --count 8

``--checkpoint`` and ``--sha256`` are what ``train classifier`` printed; with the sha256 the service
refuses a checkpoint file that has changed since (DATA_LOSS). ``test`` scores one split (default test)
with 95% bootstrap intervals, ``predict`` writes class probabilities (JSON and an ISIC-layout CSV),
``gradcam`` renders overlays into the store.
"""

from __future__ import annotations

import argparse
import json

from skingenbench.cli.connect import Service, add_connection_arguments, job_summary, outputs
from skingenbench.cli.options import add_output_arguments, manifest_ref, print_json


def _finish(args: argparse.Namespace, job, lines: list[str]) -> int:
    if args.json:
        print_json(job_summary(job))
    else:
        for line in lines:
            print(line)
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    from skingenbench.api.v1 import classification_pb2

    request = classification_pb2.TestClassifierRequest(
        checkpoint_uri=args.checkpoint,
        checkpoint_sha256=args.sha256,
        data=manifest_ref(args.manifest, "split manifest"),
        split=args.split,
        bootstrap_samples=args.bootstrap,
        seed=args.seed,
    )
    with Service.from_args("classification", args) as service:
        job = service.start_and_follow(
            "StartTest", request, f"test on {args.split}", plain=args.plain or None
        )
    result = json.loads(job.result_json or "{}")
    lines = [f"{'metric':28s} value"]
    lines += [
        f"{key:28s} {value:.4f}" for key, value in result.items() if isinstance(value, float) and key != "n"
    ]
    lines.append(f"images: {result.get('n', '?')} ({result.get('split', args.split)} split)")
    lines.append(f"result: {outputs(job).get('result_json', {}).get('uri', '')}  (job {job.job_id})")
    return _finish(args, job, lines)


def _cmd_predict(args: argparse.Namespace) -> int:
    from skingenbench.api.v1 import classification_pb2

    request = classification_pb2.PredictRequest(
        checkpoint_uri=args.checkpoint,
        checkpoint_sha256=args.sha256,
        data=manifest_ref(args.manifest),
        splits=args.splits,
        batch_size=args.batch_size,
    )
    with Service.from_args("classification", args) as service:
        job = service.start_and_follow("StartPredict", request, "predict", plain=args.plain or None)
    named = outputs(job)
    lines = [
        f"images:      {json.loads(job.result_json or '{}').get('n', '?')}",
        f"predictions: {named.get('predictions_csv', {}).get('uri', '')}",
        f"json:        {named.get('predictions_json', {}).get('uri', '')}  (job {job.job_id})",
    ]
    return _finish(args, job, lines)


def _cmd_gradcam(args: argparse.Namespace) -> int:
    from skingenbench.api.v1 import classification_pb2

    request = classification_pb2.GradCamRequest(
        checkpoint_uri=args.checkpoint,
        checkpoint_sha256=args.sha256,
        data=manifest_ref(args.manifest, "split manifest"),
        split=args.split,
        count=args.count,
        labels=args.labels,
        target_layer=args.target_layer,
    )
    with Service.from_args("classification", args) as service:
        job = service.start_and_follow("StartGradCam", request, "grad-cam", plain=args.plain or None)
    result = json.loads(job.result_json or "{}")
    lines = [
        f"overlays: {result.get('overlays', '?')} (layer {result.get('layer', '?')})",
        f"manifest: {outputs(job).get('manifest', {}).get('uri', '')}  (job {job.job_id})",
    ]
    return _finish(args, job, lines)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="the checkpoint URI `train classifier` printed")
    parser.add_argument("--sha256", default="", help="its sha256 (a changed file is then refused)")
    parser.add_argument("--manifest", required=True, help="manifest URI of the images")
    add_connection_arguments(parser, "classification")
    add_output_arguments(parser)


def register(commands: argparse._SubParsersAction) -> None:
    classify = commands.add_parser(
        "classify",
        help="test, predict with or explain a trained classifier (classification service)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).add_subparsers(dest="classify_command", required=True, metavar="{test,predict,gradcam}")

    test = classify.add_parser("test", help="metrics with 95% bootstrap CIs on one split")
    _common(test)
    test.add_argument("--split", default="test")
    test.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    test.add_argument("--seed", type=int, default=0)
    test.set_defaults(func=_cmd_test)

    predict = classify.add_parser("predict", help="class probabilities for every item (CSV, JSON)")
    _common(predict)
    predict.add_argument("--splits", nargs="*", default=[], help="only these splits (default: every item)")
    predict.add_argument("--batch-size", type=int, default=0)
    predict.set_defaults(func=_cmd_predict)

    gradcam = classify.add_parser("gradcam", help="Grad-CAM overlays for a sample of images")
    _common(gradcam)
    gradcam.add_argument("--split", default="test")
    gradcam.add_argument("--count", type=int, default=8)
    gradcam.add_argument("--labels", nargs="*", default=[], help="only images of these classes")
    gradcam.add_argument("--target-layer", default="", help="default: the classifier's usual layer")
    gradcam.set_defaults(func=_cmd_gradcam)
