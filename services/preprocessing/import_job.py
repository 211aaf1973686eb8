"""The preprocessing service's ``import`` job: a HAM10000 or MILK10K folder, or a generated phantom set,
into the store with its manifest and curation report.

A folder import is planned by reading the folder's metadata and listing (copying nothing): the plan pins
their hashes, and its output prefix is the importer's own content address of them, so an import done
before the job framework is where an identical request looks for it. The run imports the folder and
refuses one that changed since Start.

A phantom set's importer address hashes the generated files, which do not exist at Start. The
generator gives byte-identical files for the same settings and seed, so the plan addresses the set by
those (``phantom-set/<address>``, where the completion marker lives); the images and manifest go where
they always have, ``import-phantom/<address of the files>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skingenbench.services.core.hashing import content_address, output_prefix
from skingenbench.services.data.ham10000 import locate_ham10000
from skingenbench.services.data.milk10k import locate_milk10k
from skingenbench.services.data.operations import (
    DataOutcome,
    PhantomSettings,
    import_folder,
    import_options,
    import_phantom,
    phantom_settings,
)
from skingenbench.services.platform import readable
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, JobPlan
from skingenbench.services.platform.jobs import JobContext
from skingenbench.services.platform.servicer import parse_json_field
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import preprocessing_pb2

PHANTOM_STAGE = "phantom-set"
# Bump when services/data/core/phantom*.py draws different files for the same settings and seed: the
# address of a phantom set is its settings, not its files.
PHANTOM_VERSION = "1"


@dataclass(frozen=True)
class ImportPlan(JobPlan):
    source: str  # ham10000 | milk10k | phantom
    folder: str = ""  # the distribution folder, resolved (folder imports)
    mapping: dict[str, Any] | None = None  # the diagnosis mapping's dict form; None: the source's default
    input_hashes: tuple[str, ...] = ()  # sha256 of the metadata CSVs and the listing digest, as read at Start
    phantom: PhantomSettings | None = None
    seed: int = 0


class ImportKind(JobKind[preprocessing_pb2.ImportRequest, ImportPlan]):
    name = "import"
    stage = "import"  # addresses are per source (``import-<source>/...``), computed by the importers
    request_type = preprocessing_pb2.ImportRequest
    plan_type = ImportPlan

    def plan(self, request: preprocessing_pb2.ImportRequest, store: ObjectStore) -> ImportPlan:
        options = parse_json_field(request.options_json, "options_json")
        mapping = import_options(request.source, options)
        if request.source == "phantom":
            settings = phantom_settings(options, request.seed)
            address = content_address(
                PHANTOM_STAGE, PHANTOM_VERSION, [], settings.address_settings(), request.seed
            )
            return ImportPlan(
                output_prefix(PHANTOM_STAGE, address), "phantom", phantom=settings, seed=request.seed
            )
        locate = locate_ham10000 if request.source == "ham10000" else locate_milk10k
        # A data folder is read only under the server's read roots (readable.py), like every path a request names.
        folder = locate(readable.local_path(request.source_uri, "source_uri"), mapping=mapping)
        return ImportPlan(folder.prefix(), request.source, str(folder.root), mapping, folder.input_hashes)

    def run(self, plan: ImportPlan, ctx: JobContext) -> JobOutputs:
        def progress(done: int, total: int, message: str = "") -> None:
            ctx.check_cancelled()
            ctx.progress(done, total, message)

        if plan.phantom is not None:
            outcome = import_phantom(ctx.store, plan.phantom, plan.seed, progress)
        else:
            outcome = import_folder(
                ctx.store,
                plan.source,
                readable.local_path(plan.folder, "source_uri"),  # the roots may have changed since Start
                plan.mapping,
                pinned_inputs=plan.input_hashes,
                progress=progress,
            )
        return data_outputs(ctx.store, outcome)


def data_outputs(store: ObjectStore, outcome: DataOutcome) -> JobOutputs:
    """An import's or a split's outputs: the manifest, its curation report, and the counts."""
    report = outcome.report
    dropped = report.get("dropped", {})
    outputs = JobOutputs(
        summary={
            "item_count": outcome.ref.item_count,
            "totals": report.get("totals", {}),
            "dropped": dropped.get("total", 0) if isinstance(dropped, dict) else len(dropped),
        }
    )
    outputs.add("manifest", outcome.ref.uri, outcome.ref.sha256)
    for name, key in zip(("report_json", "report_md"), outcome.report_keys, strict=True):
        if key:
            outputs.add(name, store.uri(key))
    return outputs
