"""``skingenbench convert stylegan2-pkl``: NVIDIA's StyleGAN2-ADA network pickle -> a transfer folder.

    skingenbench convert stylegan2-pkl ffhq-res256-mirror-paper256-noaug.pkl --out weights/ffhq256
    skingenbench convert stylegan2-pkl FILE --out DIR --mapping-layers 2 --mbstd-group-size 4   # the reference's
                                                                                               # cfg=auto shape

The pickle is read by a restricted unpickler that runs nothing from the file
(services/generation/core/stylegan2/convert.py); the folder (safetensors + config + conversion.json) is what
a StyleGAN2-ADA training request's ``init_checkpoint`` names. The services themselves never read pickles.
"""

from __future__ import annotations

import argparse
import json


def _cmd_stylegan2_pkl(args: argparse.Namespace) -> int:
    from skingenbench.services.generation.core.stylegan2.convert import REPORT_FILE, convert_network_pickle

    report = convert_network_pickle(
        args.file,
        args.out,
        mapping_layers=args.mapping_layers,
        mbstd_group_size=args.mbstd_group_size,
        expected_sha256=args.sha256,
    )
    mapping = report["mapping"]
    print(f"converted {report['source']['file']} (sha256 {report['source']['sha256'][:16]}…) -> {args.out}")
    print(
        f"networks: {', '.join(report['source']['networks'])}; not converted: "
        f"{', '.join(report['source']['not_converted']) or 'nothing'}"
    )
    print(
        f"mapping network: {mapping['source_layers']} layers in the file, {mapping['target_layers']} written"
    )
    if mapping["dropped"]:
        print(f"DROPPED (not in the target's shallower mapping): {', '.join(mapping['dropped'])}")
        print(f"w_avg: {mapping['w_avg']}")
    for line in report["filled"]:
        print(f"filled: {line}")
    overrides = report["paper_profile_overrides"]
    print(
        "a paper-profile StyleGAN2-ADA run starts from this folder with init_checkpoint="
        f"{args.out} and config overrides {json.dumps(overrides, sort_keys=True) if overrides else '(none)'}"
    )
    print(f"the full report: {args.out}/{REPORT_FILE}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser("convert", help="convert foreign weights into this project's formats")
    kinds = convert.add_subparsers(dest="kind", required=True)
    pkl = kinds.add_parser(
        "stylegan2-pkl",
        help="NVIDIA's StyleGAN2-ADA network pickle -> safetensors + config (no code from the file runs)",
    )
    pkl.add_argument("file", help="the network pickle (e.g. NVIDIA's FFHQ-256 transfer source)")
    pkl.add_argument("--out", required=True, help="folder to write (a save_pretrained folder)")
    pkl.add_argument(
        "--mapping-layers",
        type=int,
        default=0,
        help="mapping depth to write (default: the file's; fewer drops the later layers, listed in the report)",
    )
    pkl.add_argument(
        "--mbstd-group-size", type=int, default=0, help="minibatch-stddev group (default: the file's)"
    )
    pkl.add_argument("--sha256", default="", help="the file's expected sha256 (checked before reading)")
    pkl.set_defaults(func=_cmd_stylegan2_pkl)
