"""``skingenbench train generator|classifier``: a training job on the running service, with its progress.

    skingenbench train generator ddpm --manifest MANIFEST_URI --profile tiny --set train_steps=30
    skingenbench train classifier resnet18 --manifest SPLIT_MANIFEST_URI --profile tiny --regime real

A generator trains on the training-split items of ``--label`` (default MEL) in a train-only manifest
(``skingenbench preprocess run … --splits train``); a classifier trains on the train split of a split
manifest and selects its model on the val split. ``--set key=value`` overrides one field of the
profile's config; the service checks names, profiles and overrides against its registry before the job
starts. The result names the trained model (a generator's ``model`` record, a classifier's
``checkpoint``) for ``generate`` and ``classify``.
"""

from __future__ import annotations

import argparse
import json

from skingenbench.cli.connect import Service, add_connection_arguments, job_summary, outputs
from skingenbench.cli.options import (
    add_output_arguments,
    add_set_argument,
    local_file_ref,
    manifest_ref,
    parse_overrides,
    print_json,
)


def _cmd_train_generator(args: argparse.Namespace) -> int:
    from skingenbench.api.v1 import generation_pb2

    request = generation_pb2.TrainGeneratorRequest(
        generator=args.generator,
        profile=args.profile,
        config_json=json.dumps(parse_overrides(args.overrides), sort_keys=True),
        train=manifest_ref(args.manifest, "train-only manifest"),
        classes=args.label,
        seed=args.seed,
        name=args.name,
    )
    if args.init_checkpoint:
        request.init_checkpoint.uri = args.init_checkpoint
    with Service.from_args("generation", args) as service:
        job = service.start_and_follow(
            "StartTraining", request, f"train {args.name or args.generator}", plain=args.plain or None
        )
    if args.json:
        print_json(job_summary(job))
        return 0
    result, named = json.loads(job.result_json or "{}"), outputs(job)
    print(f"model:      {named['model']['uri']}")
    print(f"checkpoint: {named['checkpoint']['uri']}")
    print(f"steps:      {result.get('step', '?')}/{result.get('total_steps', '?')}  job {job.job_id}")
    print(f"next:       skingenbench generate --model {named['model']['uri']} --count 16 --out synthetic/")
    return 0


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    from skingenbench.api.v1 import classification_pb2

    request = classification_pb2.TrainClassifierRequest(
        classifier=args.classifier,
        profile=args.profile,
        config_json=json.dumps(parse_overrides(args.overrides), sort_keys=True),
        data=manifest_ref(args.manifest, "split manifest"),
        regime=args.regime,
        synthetic=[manifest_ref(uri, "synthetic manifest") for uri in args.synthetic],
        synthetic_count=args.synthetic_count,
        synthetic_ratio=args.synthetic_ratio,
        synthetic_label=args.synthetic_label,
        seed=args.seed,
        run_name=args.run_name,
    )
    if args.augmented:
        request.augmented.CopyFrom(manifest_ref(args.augmented, "augmented manifest"))
    if args.pretrained_weights:
        request.pretrained_weights.CopyFrom(local_file_ref(args.pretrained_weights, "--pretrained-weights"))
    label = f"train {args.run_name or args.classifier}"
    with Service.from_args("classification", args) as service:
        job = service.start_and_follow("StartTraining", request, label, plain=args.plain or None)
    if args.json:
        print_json(job_summary(job))
        return 0
    result, checkpoint = json.loads(job.result_json or "{}"), outputs(job)["checkpoint"]
    print(f"checkpoint: {checkpoint['uri']}")
    print(f"sha256:     {checkpoint['sha256']}")
    print(f"epochs:     {result.get('epochs', '?')}  job {job.job_id}")
    print(
        f"next:       skingenbench classify test --checkpoint {checkpoint['uri']} "
        f"--sha256 {checkpoint['sha256']} --manifest {args.manifest}"
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train a generator or a classifier on the running services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).add_subparsers(dest="train_command", required=True, metavar="{generator,classifier}")

    generator = train.add_parser("generator", help="train a generative model (generation service)")
    generator.add_argument("generator", help="registry name: ddpm, stylegan2_ada or dermgan")
    generator.add_argument("--manifest", required=True, help="a train-only manifest URI (or store key)")
    generator.add_argument("--profile", default="paper", help="tiny (CPU, seconds) or paper (default)")
    add_set_argument(generator, "generator")
    generator.add_argument(
        "--label", action="append", default=[], help="class to train on, repeatable (default MEL)"
    )
    generator.add_argument("--seed", type=int, default=0)
    generator.add_argument("--name", default="", help="a name for the model (`generate --model NAME`)")
    generator.add_argument("--init-checkpoint", default="", help="start from this checkpoint (transfer)")
    add_connection_arguments(generator, "generation")
    add_output_arguments(generator)
    generator.set_defaults(func=_cmd_train_generator)

    classifier = train.add_parser("classifier", help="train a classifier (classification service)")
    classifier.add_argument("classifier", help="e.g. resnet18, resnet50, vgg16, efficientnet_b0")
    classifier.add_argument(
        "--manifest", required=True, help="a split manifest URI: train to fit, val to select"
    )
    classifier.add_argument("--profile", default="paper", help="tiny (CPU, seconds) or paper (default)")
    add_set_argument(classifier, "classifier")
    classifier.add_argument("--regime", default="real", choices=["real", "real+synthetic", "real+augment"])
    classifier.add_argument("--synthetic", nargs="*", default=[], help="synthetic manifest URIs")
    classifier.add_argument("--synthetic-count", type=int, default=0, help="0: use --synthetic-ratio")
    classifier.add_argument("--synthetic-ratio", type=float, default=0.0)
    classifier.add_argument("--synthetic-label", default="", help="default MEL")
    classifier.add_argument("--augmented", default="", help="classic-augmentation manifest URI")
    classifier.add_argument("--pretrained-weights", default="", help="local ImageNet weights file")
    classifier.add_argument("--seed", type=int, default=0)
    classifier.add_argument("--run-name", default="", help="e.g. A1/resnet18/seed0")
    add_connection_arguments(classifier, "classification")
    add_output_arguments(classifier)
    classifier.set_defaults(func=_cmd_train_classifier)
