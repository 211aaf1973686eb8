"""The one job framework: a job kind plans once at Start, runs from its plan, and marks its outputs done.

A job kind is a class with a ``name`` (what ``Start*`` submits), a ``stage`` and ``version`` (the
namespace and version of its content addresses), a typed ``plan(request, store) -> Plan`` and a
``run(plan, ctx) -> JobOutputs``. The framework (``JobRunner``) does the rest the same way for every
kind (DESIGN.md, rules 3 and 4):

1. ``plan`` runs once, when the job is submitted, before anything is queued: every refusal of a bad
   request is an exception with its gRPC status, answered by the ``Start*`` call itself.
2. The plan, not the raw request, is persisted in the job record; a job resumed after a restart runs
   from that plan and is never re-planned.
3. The plan names its ``output_prefix`` (a content address of its inputs' hashes, settings, seed and the
   kind's version). If ``<output_prefix>/summary.json`` exists, an identical job finished there: its
   outputs are re-attached and nothing is recomputed.
4. ``run`` writes its outputs; the framework writes ``summary.json`` after every one of them, so a
   half-written prefix is never taken for a finished one.

Cancellation and progress go through the ``JobContext`` a kind's ``run`` receives.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import dacite
from google.protobuf.message import Message
from skingenbench.services.core.errors import DataIntegrityError
from skingenbench.services.core.hashing import content_address, output_prefix
from skingenbench.services.platform.store import ObjectStore

if TYPE_CHECKING:
    from skingenbench.services.platform.jobs import JobContext

COMPLETION_MARKER = "summary.json"
JSONValue = Any  # what json.loads returns: the one place the framework admits an untyped value


@dataclass(frozen=True)
class ObjectRef:
    """A named output: where it is and the sha256 of its bytes ("" where the bytes are a folder)."""

    uri: str
    sha256: str = ""

    def as_request(self) -> dict[str, str]:
        """As a request's ObjectRef/ManifestRef reads in JSON (proto3 JSON leaves an empty field out)."""
        return {"uri": self.uri, "sha256": self.sha256} if self.sha256 else {"uri": self.uri}


@dataclass(frozen=True)
class JobPlan:
    """What a job will do, decided once at Start. Subclasses are frozen dataclasses of JSON-able fields.

    ``output_prefix`` is the content address under which the job's outputs and its completion marker
    live; a kind computes it with ``JobKind.address``.
    """

    output_prefix: str

    def to_json(self) -> dict[str, JSONValue]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=_jsonable))


@dataclass
class JobOutputs:
    """What a job leaves: named objects and a JSON summary (the ``result_json`` of the Job message)."""

    files: dict[str, ObjectRef] = field(default_factory=dict)
    summary: dict[str, JSONValue] = field(default_factory=dict)

    def add(self, name: str, uri: str, sha256: str = "") -> None:
        self.files[name] = ObjectRef(uri, sha256)

    def to_marker(self) -> bytes:
        outputs = {name: [ref.uri, ref.sha256] for name, ref in self.files.items()}
        return json.dumps(
            {"outputs": outputs, "summary": self.summary}, indent=1, sort_keys=True, default=_jsonable
        ).encode()

    @classmethod
    def from_marker(cls, raw: bytes, where: str) -> JobOutputs:
        try:
            data = json.loads(raw)
            files = {name: ObjectRef(str(uri), str(sha)) for name, (uri, sha) in data["outputs"].items()}
            return cls(files, dict(data["summary"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataIntegrityError(
                f"completion marker {where} is unreadable ({type(exc).__name__}: {exc})",
                hint="delete the marker to recompute the job's outputs",
            ) from None


def _jsonable(value: object) -> JSONValue:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # numpy scalars and arrays
        return tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON-serialisable in a plan: {type(value).__name__}")


RequestT = TypeVar("RequestT", bound=Message)
PlanT = TypeVar("PlanT", bound=JobPlan)

# Plans are rebuilt from JSON with their declared types: tuples come back as tuples, nested
# dataclasses as dataclasses, and a field of the wrong type is an error rather than a silent cast.
_DACITE = dacite.Config(cast=[tuple], strict=True)


class JobKind(abc.ABC, Generic[RequestT, PlanT]):
    """One kind of long work. Subclasses set the class attributes and write ``plan`` and ``run``."""

    name: ClassVar[str]  # the job kind as clients see it (Job.kind)
    stage: ClassVar[str]  # namespace of its content addresses (the prefix's first part)
    version: ClassVar[str] = "1"  # bump when the same plan would now give different outputs
    request_type: ClassVar[type[Message]]
    plan_type: ClassVar[type[JobPlan]]

    @abc.abstractmethod
    def plan(self, request: RequestT, store: ObjectStore) -> PlanT:
        """Check the request against the store and decide everything the job will do. Raise to refuse."""

    @abc.abstractmethod
    def run(self, plan: PlanT, ctx: JobContext) -> JobOutputs:
        """Do the work of ``plan``: write outputs under ``plan.output_prefix`` and name them."""

    # -- helpers every kind uses ---------------------------------------------------------------------
    @classmethod
    def address(cls, inputs: list[str], settings: dict[str, JSONValue], seed: int | None = None) -> str:
        """The output prefix of a plan: a content address of input hashes, settings, seed and version."""
        return output_prefix(cls.stage, content_address(cls.stage, cls.version, inputs, settings, seed))

    def plan_from_json(self, data: dict[str, JSONValue]) -> PlanT:
        plan = dacite.from_dict(self.plan_type, data, config=_DACITE)
        return plan  # type: ignore[return-value]  # plan_type is PlanT's class


def marker_key(plan: JobPlan) -> str:
    return f"{plan.output_prefix}/{COMPLETION_MARKER}"


def finished_outputs(store: ObjectStore, plan: JobPlan) -> JobOutputs | None:
    """The outputs of an identical job that finished, or None."""
    key = marker_key(plan)
    if not store.exists(key):
        return None
    return JobOutputs.from_marker(store.get_bytes(key), store.uri(key))


def mark_finished(store: ObjectStore, plan: JobPlan, outputs: JobOutputs) -> None:
    """Write the completion marker. Last: every output it names is already stored."""
    store.put_bytes(marker_key(plan), outputs.to_marker(), "application/json")
