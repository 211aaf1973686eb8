"""``skingenbench reader-study serve|report``: DermGAN's Human Turing test on any synthetic and real manifest.

``serve`` makes the study (or resumes it: the same manifests and options name the same study) and serves
the reader page with uvicorn; ``report`` computes the statistics from what readers answered
(``skingenbench/reader_study/statistics.py``; docs/reader-study.md).
"""

from __future__ import annotations

import argparse
import json


def _store(args: argparse.Namespace):
    import os

    from skingenbench.cli import stack
    from skingenbench.services.platform.store import store_from_uri

    # The store `skingenbench up` gives its services, as the data commands use (cli/data.py).
    return store_from_uri(
        args.store or os.environ.get("SKINGENBENCH_STORE") or (stack.home() / "store").as_uri()
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from skingenbench.cli.errors import UserError
    from skingenbench.reader_study import study_store
    from skingenbench.reader_study.app import create_app

    store = _store(args)
    if args.set and args.real:
        study = study_store.create_or_resume_study(
            store,
            args.set,
            args.real,
            count=args.count,
            seed=args.seed,
            study_id=args.study_id,
            match_classes=not args.no_class_match,
            real_split=args.real_split,
        )
    elif args.study_id and not (args.set or args.real):
        study = study_store.load_study(store, args.study_id)
    else:
        raise UserError("serve needs --set and --real (a new study), or --study-id alone (an existing one)")
    import uvicorn

    print(
        f"reader study {study.study_id}: {len(study.items)} images; answers go to "
        f"{store.uri(study_store.answers_key(study.study_id, 'READER'))}"
    )
    print(f"readers open http://{args.host}:{args.port}/?reader=NAME  (Ctrl-C stops)", flush=True)
    uvicorn.run(
        create_app(store, study, image_size=args.image_size),
        host=args.host,
        port=args.port,
        log_level="warning",
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from skingenbench.reader_study import study_store
    from skingenbench.reader_study.report_text import format_report
    from skingenbench.reader_study.statistics import study_report

    store = _store(args)
    study = study_store.load_study(store, args.study_id)
    report = study_report(study, study_store.all_answers(store, study.study_id))
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def register(commands) -> None:
    from skingenbench.reader_study.display import DEFAULT_SIZE
    from skingenbench.reader_study.reading_list import DEFAULT_COUNT

    store_help = "store URI (default: $SKINGENBENCH_STORE, else $SKINGENBENCH_HOME/store as `up` uses)"
    group = commands.add_parser(
        "reader-study", help="a human Turing test: readers tell real from synthetic images (web page)"
    ).add_subparsers(dest="reader_study_command", required=True)

    serve = group.add_parser("serve", help="serve the reader page for a new or existing study")
    serve.add_argument("--set", default="", help="URI of the synthetic images' manifest")
    serve.add_argument("--real", default="", help="URI of the real images' manifest")
    serve.add_argument("--count", type=int, default=DEFAULT_COUNT, help="images in the study, half synthetic")
    serve.add_argument("--seed", type=int, default=0, help="seed of the draw and of each reader's order")
    serve.add_argument("--study-id", default="", help="name of the study (default: a hash of its definition)")
    serve.add_argument("--real-split", default="", help="draw real images from this split only (e.g. test)")
    serve.add_argument(
        "--no-class-match",
        action="store_true",
        help="draw real images of any class (default: the synthetic set's)",
    )
    serve.add_argument(
        "--image-size", type=int, default=DEFAULT_SIZE, help="pixels per side shown to readers"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--store", default="", help=store_help)
    serve.set_defaults(func=_cmd_serve)

    report = group.add_parser("report", help="accuracy, sensitivity, Fleiss' kappa, diagnosis agreement")
    report.add_argument("--study-id", required=True)
    report.add_argument("--json", action="store_true", help="the figures as JSON")
    report.add_argument("--store", default="", help=store_help)
    report.set_defaults(func=_cmd_report)
