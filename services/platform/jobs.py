"""The job runner: long work as jobs whose state lives in the object store (DESIGN.md, rule 4).

A job is identified by a hash of (service, kind, request): submitting the same request again returns
the existing job instead of starting a second one, which makes a grid that died resumable. The
runner persists each job's record (state, last progress, outputs, error, request and the kind's plan)
under ``jobs/<service>/<job_id>.json``, so ``GetJob``/``WatchJob`` answer after a restart, and jobs
that were queued or running when the server stopped are started again on the next start, from their
persisted plan; they resume from the checkpoints they wrote (training) or find their content-addressed
outputs through the completion marker (``job_kind``).

A store that cannot be written never strands a job (docs/architecture.md, "Failure"): a record write
that fails is retried in the background with bounded exponential backoff until the store answers, and
meanwhile the job this process runs is answered from memory. A job that ends while its final state
cannot be written ends all the same: in memory it becomes FAILED with an UNAVAILABLE error that says
the store could not be written (watchers get that final event, WatchJob returns, an identical request
starts a new attempt), and that state is what is written once the store is back.

One module of about 650 lines: the record, the context a job sees, the runner and the retry of refused
records are one state machine
(queued -> running -> final, persisted at each change), kept together so that every transition reads
in one place.
"""

from __future__ import annotations

import builtins  # ``list`` is also a method of JobRunner
import collections
import contextlib
import datetime as _dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from skingenbench.services.core.errors import (
    Cancelled,
    FailedPrecondition,
    NotFound,
    SkinGenBenchError,
    Unavailable,
)
from skingenbench.services.core.hashing import canonical_json, sha256_bytes
from skingenbench.services.platform.job_kind import JobKind, JobOutputs, finished_outputs, mark_finished
from skingenbench.services.platform.store import ObjectStore

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
# Stopped by a shutdown before it ended: the last event a watcher gets from this process (the stream ends
# with it, so no watcher holds the server open), not the job's end: the next start resumes it.
INTERRUPTED = "INTERRUPTED"
WATCH_ENDS = FINAL_STATES | {INTERRUPTED}
RESUMABLE_STATES = frozenset({QUEUED, RUNNING, INTERRUPTED})
_EVENTS_KEPT = 1000  # per job, in memory, for WatchJob replay
_PERSIST_INTERVAL_S = 1.0  # progress is persisted at most this often; state changes always
# A record the store refused is written again after 0.5 s, 1 s, 2 s, ... at most 5 s apart, until it is:
# once the store is back, a job's state is in it within a few seconds.
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 5.0
# Of the runner's shutdown budget, what is kept for recording the jobs still running at its end as
# INTERRUPTED and for the last write of refused records (at most this, at most a quarter of the budget).
_RECORD_RESERVE_S = 2.0
_NO_LOCK = contextlib.nullcontext()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class JobRecord:
    job_id: str
    kind: str
    service: str
    request: dict[str, Any]
    state: str = QUEUED
    created: str = field(default_factory=_now)
    started: str = ""
    finished: str = ""
    last_progress: dict[str, Any] = field(default_factory=dict)
    outputs: list[dict[str, str]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    reused: bool = False
    # The typed plan of a framework job kind, as JSON (``JobKind.plan``): what a resumed job runs from.
    plan: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> JobRecord:
        return cls(**json.loads(raw))


class JobInterrupted(Exception):
    """Raised inside a handler when the server shuts down: the job resumes on the next start."""


class JobContext:
    """What a handler sees of its job: progress reporting, outputs, and cancellation checks."""

    def __init__(self, runner: JobRunner, record: JobRecord, cancel: threading.Event) -> None:
        self._runner = runner
        self.record = record
        self._cancel = cancel
        self.store = runner.store

    @property
    def job_id(self) -> str:
        return self.record.job_id

    @property
    def should_stop(self) -> bool:
        """True when the job is cancelled or the server is stopping: checkpoint, then return."""
        return self._cancel.is_set() or self._runner.stopping.is_set()

    def check_cancelled(self) -> None:
        """Call between units of work. Raises once the job must stop."""
        if self._runner.stopping.is_set():
            raise JobInterrupted("server is shutting down")
        if self._cancel.is_set():
            raise Cancelled("job was cancelled")

    def progress(self, step: int, total: int = 0, message: str = "", **metrics: float) -> None:
        self._runner._emit(self.record, step=step, total=total, message=message, metrics=metrics)

    def add_output(self, name: str, uri: str, sha256: str = "") -> None:
        self.record.outputs = [o for o in self.record.outputs if o["name"] != name]
        self.record.outputs.append({"name": name, "uri": uri, "sha256": sha256})


@dataclass
class _Live:
    """In-memory state of a job this process runs or ran."""

    record: JobRecord
    cancel: threading.Event = field(default_factory=threading.Event)
    events: collections.deque = field(default_factory=lambda: collections.deque(maxlen=_EVENTS_KEPT))
    changed: threading.Condition = field(default_factory=threading.Condition)
    sequence: int = 0
    last_persist: float = 0.0
    # True while the store holds an older state than ``record`` (a write failed): the runner retries it,
    # and until then this process answers for the job from ``record``.
    unrecorded: bool = False
    failed_writes: int = 0
    persist_lock: threading.Lock = field(default_factory=threading.Lock)


class JobRunner:
    """Runs registered job kinds on a bounded thread pool and persists their records."""

    def __init__(self, store: ObjectStore, service: str, slots: int = 1) -> None:
        self.store = store
        self.service = service
        self.slots = max(1, int(slots))
        self._kinds: dict[str, JobKind] = {}
        self._live: dict[str, _Live] = {}
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(
            max_workers=self.slots, thread_name_prefix=f"job-{service.split('.')[-1]}"
        )
        self.stopping = threading.Event()
        # Jobs whose latest state the store refused, written again by one background thread.
        self._unrecorded: dict[str, _Live] = {}
        self._unrecorded_changed = threading.Condition()
        self._retrier: threading.Thread | None = None
        self._closed = threading.Event()
        self._busy = 0  # pool threads inside ``_run_guarded``: a job that ignores shutdown keeps one

    # -- registration ----------------------------------------------------------------------------
    def register(self, kind: JobKind) -> None:
        """Register a job kind under its name; ``submit(kind.name, request)`` then plans and queues it."""
        self._kinds[kind.name] = kind

    def _key(self, job_id: str) -> str:
        return f"jobs/{self.service}/{job_id}.json"

    @staticmethod
    def job_id_for(service: str, kind: str, request: dict[str, Any]) -> str:
        return sha256_bytes(canonical_json({"service": service, "kind": kind, "request": request}).encode())[
            :24
        ]

    # -- submitting ------------------------------------------------------------------------------
    def submit(self, kind: str, request: Message) -> JobRecord:
        """Plan a job and start it, or return the existing one for an identical request.

        A succeeded, queued or running job of the same request is returned as it is (``reused``).
        Otherwise the kind's plan step runs here, before anything is queued: a request it refuses is
        answered with its status and leaves no job behind. A failed or cancelled job is planned and
        started again, and so is one that ended here without its final state recorded, or one the store
        calls running that no live process runs.
        """
        job_kind = self._kinds.get(kind)
        if job_kind is None:
            raise NotFound(f"no job kind {kind!r} on {self.service}")
        if self.stopping.is_set():
            raise FailedPrecondition("server is shutting down; submit the job again after it restarts")
        # The job id hashes the request as the client sent it, so a repeated request finds its job.
        request_dict = json_format.MessageToDict(request, preserving_proto_field_name=True)
        job_id = self.job_id_for(self.service, kind, request_dict)
        with self._lock:
            found = self._reusable(job_id, self._load(job_id))
        if found is not None:
            return found
        # Planning reads the store (manifests, checkpoint hashes): done outside the lock, then checked again.
        plan = job_kind.plan(request, self.store).to_json()
        with self._lock:
            if self.stopping.is_set():  # again under the lock: shutdown's sweep sees every queued job
                raise FailedPrecondition("server is shutting down; submit the job again after it restarts")
            existing = self._load(job_id)  # the store must answer: a new attempt is recorded there first
            found = self._reusable(job_id, existing)
            if found is not None:
                return found
            record = JobRecord(
                job_id=job_id, kind=kind, service=self.service, request=request_dict, plan=plan
            )
            live = self._live.get(job_id)
            if existing is not None:
                record.attempts = existing.attempts
                record.created = existing.created
            if live is not None:  # memory is never behind the store (its last state may be unrecorded)
                record.attempts = max(record.attempts, live.record.attempts)
            self._start(record)
            return record

    def _reusable(self, job_id: str, existing: JobRecord | None) -> JobRecord | None:
        """The job of an identical request if it succeeded or is still queued or running here.

        A job this process runs is judged by its state in memory, which is never behind the store's: a
        job that ended while its state could not be recorded is final here though the store still says
        RUNNING, and is not handed out as ``reused``. A job the store calls QUEUED or RUNNING that no
        live process runs (it died with its server) is stuck, not active: it is started again.
        """
        live = self._live.get(job_id)
        if live is not None and live.record.state not in FINAL_STATES:
            return replace(live.record, reused=True)
        if live is not None and live.unrecorded:
            return None  # ended, but only this process knows it: a new attempt
        if existing is not None and existing.state == SUCCEEDED:
            existing.reused = True
            return existing
        return None

    def _start(self, record: JobRecord) -> None:
        """Record a job as QUEUED and queue it; the store must take the record, or nothing starts."""
        previous = self._live.get(record.job_id)
        live = _Live(record)
        self._live[record.job_id] = live
        record.state = QUEUED
        record.error, record.result, record.finished = {}, {}, ""
        try:
            self._emit(record, step=0, total=0, message="queued", metrics={}, force=True, strict=True)
        except BaseException:
            if previous is None:
                self._live.pop(record.job_id, None)
            else:
                self._live[record.job_id] = previous
            raise
        # This attempt's record supersedes an earlier attempt's that is still waiting to be written.
        with self._unrecorded_changed:
            self._unrecorded.pop(record.job_id, None)
        self._pool.submit(self._run_guarded, record, live)

    def resume_interrupted(self) -> list[str]:
        """Start again every job that was queued, running or interrupted when this service last stopped."""
        resumed = []
        for key in self.store.list(f"jobs/{self.service}/"):
            try:
                record = JobRecord.from_json(self.store.get_bytes(key))
            except (ValueError, TypeError) as exc:
                log.warning("unreadable job record %s: %s", key, exc)
                continue
            if record.state in RESUMABLE_STATES and record.job_id not in self._live:
                if record.kind not in self._kinds:
                    continue
                log.info("resuming interrupted job %s (%s)", record.job_id, record.kind)
                with self._lock:
                    self._start(record)
                resumed.append(record.job_id)
        return resumed

    # -- running ---------------------------------------------------------------------------------
    def _run_guarded(self, record: JobRecord, live: _Live) -> None:
        """``_run`` in a pool thread: an exception that escapes it is logged and fails the job, never
        vanishes into the thread pool's future (which nobody reads)."""
        with self._lock:
            self._busy += 1
        try:
            self._run(record, live)
        except BaseException:
            log.exception("job %s (%s): the job runner itself failed", record.job_id, record.kind)
            if live.events and live.events[-1]["state"] in FINAL_STATES:
                return  # its watchers were told how it ended
            if record.state in (QUEUED, INTERRUPTED) and self.stopping.is_set():
                return  # left for the next start
            try:
                record.result = {}
                record.error = {
                    "code": "INTERNAL",
                    "message": "the job runner failed while running this job",
                    "hint": "this is a bug; the server log has the traceback. Submit the request again",
                    "context": {},
                }
                self._finish(record, FAILED, message="INTERNAL: the job runner failed")
            except BaseException:
                log.exception("job %s: could not record its failure", record.job_id)
        finally:
            with self._lock:
                self._busy -= 1

    def _run(self, record: JobRecord, live: _Live) -> None:
        if live.cancel.is_set():
            self._finish(record, CANCELLED, message="cancelled before it started")
            return
        # Under the runner's lock, against shutdown's sweep of queued jobs: either the sweep finds this job
        # QUEUED and interrupts it, or it is RUNNING before the sweep looks and stops through its context.
        with self._lock:
            if self.stopping.is_set():
                return  # the sweep in ``shutdown`` tells its watchers; the next start resumes it
            record.state = RUNNING
            record.started = _now()
            record.attempts += 1
        self._emit(record, step=0, total=0, message="started", metrics={}, force=True)
        context = JobContext(self, record, live.cancel)
        try:
            result = self._run_kind(self._kinds[record.kind], record, context)
        except JobInterrupted:
            self._interrupt(live, "interrupted by shutdown; resumes when the service restarts")
            return
        except Cancelled:
            self._finish(record, CANCELLED, message="cancelled")
            return
        except Exception as exc:  # a handler's failure is the job's failure, never the server's
            from skingenbench.services.platform.status import error_detail_dict

            detail = error_detail_dict(exc)
            if not isinstance(exc, SkinGenBenchError):
                log.exception("job %s (%s) failed", record.job_id, record.kind)
            record.error = detail
            self._finish(record, FAILED, message=f"{detail['code']}: {detail['message']}")
            return
        record.result = dict(result or {})
        self._finish(record, SUCCEEDED, message="done")

    def _run_kind(self, kind: JobKind, record: JobRecord, context: JobContext) -> dict[str, Any]:
        """Run a framework job from its persisted plan; reattach an identical finished job's outputs."""
        if record.plan:
            plan = kind.plan_from_json(record.plan)
        else:  # a record written before its kind kept plans: plan it now, once, and keep the plan
            plan = kind.plan(json_format.ParseDict(record.request, kind.request_type()), self.store)
            record.plan = plan.to_json()
        outputs = finished_outputs(self.store, plan)
        reused = outputs is not None
        if outputs is None:
            outputs = kind.run(plan, context)
            if not isinstance(outputs, JobOutputs):
                raise TypeError(f"job kind {kind.name!r} returned {type(outputs).__name__}, not JobOutputs")
            mark_finished(self.store, plan, outputs)  # last: every output it names is stored
        for name, ref in outputs.files.items():
            context.add_output(name, ref.uri, ref.sha256)
        return {**outputs.summary, "reused_output": True} if reused else dict(outputs.summary)

    def _finish(self, record: JobRecord, state: str, message: str) -> None:
        live = self._live.get(record.job_id)
        # Under the job's condition: a shutdown that abandons the job (``_interrupt``) cannot come between
        # the new state and its event.
        with live.changed if live is not None and live.record is record else _NO_LOCK:
            record.state = state
            record.finished = _now()
            last = record.last_progress
            self._emit(
                record,
                step=last.get("step", 0),
                total=last.get("total", 0),
                message=message,
                metrics=last.get("metrics", {}),
                force=True,
            )

    def _interrupt(self, live: _Live, message: str, only_if: frozenset[str] = RESUMABLE_STATES) -> bool:
        """End a job's watch streams with INTERRUPTED and record it so; the next start resumes it.

        ``only_if``: the states it may be interrupted from (a job that reached a final state meanwhile
        keeps it). Returns whether it was interrupted."""
        record = live.record
        with live.changed:
            if record.state not in only_if:
                return False
            record.state = INTERRUPTED
            last = record.last_progress
            self._emit(
                record,
                step=last.get("step", 0),
                total=last.get("total", 0),
                message=message,
                metrics=last.get("metrics", {}),
                force=True,
            )
        return True

    def _emit(
        self,
        record: JobRecord,
        *,
        step: int,
        total: int,
        message: str,
        metrics: dict[str, float],
        force: bool = False,
        strict: bool = False,
    ) -> None:
        """Record a progress event and tell watchers. ``strict``: a store that refuses it raises."""
        live = self._live.get(record.job_id)
        sequence = (live.sequence + 1) if live else record.last_progress.get("sequence", 0) + 1
        event = {
            "job_id": record.job_id,
            "sequence": sequence,
            "state": record.state,
            "step": int(step),
            "total": int(total),
            "metrics": {k: float(v) for k, v in metrics.items()},
            "message": message,
            "time": _now(),
        }
        record.last_progress = event
        # Persist before telling watchers: a client that sees the final event and then calls GetJob
        # must find the final state in the store. A store that refuses the write does not hold the
        # job up: the write is retried in the background, and a final state that could not be written
        # becomes FAILED/UNAVAILABLE here (GetJob answers from memory until the store has it).
        now = time.monotonic()
        if live is None:
            self.store.put_bytes(self._key(record.job_id), record.to_json(), "application/json")
        elif force or now - live.last_persist >= _PERSIST_INTERVAL_S:
            if not self._persist(live, strict=strict):
                event = record.last_progress  # a final state that was not recorded: as surfaced
            live.last_persist = now
        if live is not None:
            with live.changed:
                live.sequence = sequence
                live.events.append(event)
                live.changed.notify_all()

    # -- recording, and writing again what the store refused ----------------------------------------
    def _persist(self, live: _Live, strict: bool = False) -> bool:
        """Write a live job's record. On failure: a final state is surfaced as FAILED/UNAVAILABLE, and the
        record is queued for the retrier (both under the record's lock, so the retrier writes the
        surfaced state, never the one before it); ``strict`` raises instead."""
        record = live.record
        with live.persist_lock:
            data = record.to_json()  # not guarded: a record that cannot be serialised is a bug
            try:
                self.store.put_bytes(self._key(record.job_id), data, "application/json")
            except Exception as exc:
                if strict:
                    raise
                if record.state in FINAL_STATES:
                    self._surface_unrecorded(record, exc)
                self._note_unrecorded(live, exc)
                return False
            self._note_recorded(live)
        return True

    def _note_unrecorded(self, live: _Live, exc: Exception) -> None:
        live.failed_writes += 1
        if not live.unrecorded:  # once per streak; the retries are quiet until the store answers
            live.unrecorded = True
            log.warning(
                "job %s (%s): could not record its %s state (%s: %s); retrying with backoff until the "
                "store answers",
                live.record.job_id,
                live.record.kind,
                live.record.state,
                type(exc).__name__,
                exc,
            )
        with self._unrecorded_changed:
            self._unrecorded[live.record.job_id] = live
            if self._retrier is None or not self._retrier.is_alive():
                self._retrier = threading.Thread(
                    target=self._retry_unrecorded, name=f"job-records-{self.service}", daemon=True
                )
                self._retrier.start()
            self._unrecorded_changed.notify_all()

    def _note_recorded(self, live: _Live) -> None:
        if live.unrecorded:
            log.info(
                "job %s (%s): recorded its %s state after %d failed write(s)",
                live.record.job_id,
                live.record.kind,
                live.record.state,
                live.failed_writes,
            )
        live.unrecorded, live.failed_writes = False, 0
        with self._unrecorded_changed:
            if self._unrecorded.get(live.record.job_id) is live:
                del self._unrecorded[live.record.job_id]

    def _surface_unrecorded(self, record: JobRecord, store_error: Exception) -> None:
        """A job ended but the store refused its final state: it ends FAILED/UNAVAILABLE, saying why.

        Watchers get this as the final event and GetJob answers it from memory; it is also what the
        retrier writes once the store answers, so what a client saw is what the store keeps. The state
        the job reached and its own error, if any, are kept in the error's context.
        """
        ended_as, job_error = record.state, record.error
        context = {"ended_as": ended_as}
        if job_error:
            context["job_error"] = f"{job_error.get('code', '')}: {job_error.get('message', '')}"
        store_message = (
            store_error.message if isinstance(store_error, SkinGenBenchError) else str(store_error)
        )
        record.state = FAILED
        record.error = {
            "code": "UNAVAILABLE",
            "message": f"the job ended {ended_as}, but the object store could not be written to record it: "
            f"{store_message or type(store_error).__name__}",
            "hint": "the server records this state as soon as the store answers again; submit the same "
            "request to start a new attempt (finished outputs are reattached, not recomputed)",
            "context": context,
        }
        record.last_progress = {
            **record.last_progress,
            "state": FAILED,
            "message": f"UNAVAILABLE: {record.error['message']}",
        }

    def _retry_unrecorded(self) -> None:
        """Write the records the store refused, with bounded exponential backoff, until it takes them."""
        delay = _RETRY_FIRST_S
        while not self._closed.is_set():
            with self._unrecorded_changed:
                if not self._unrecorded:
                    delay = _RETRY_FIRST_S
                    self._unrecorded_changed.wait(1.0)
                    continue
            if self._closed.wait(delay):
                return
            with self._unrecorded_changed:
                waiting = list(self._unrecorded.items())
            for job_id, live in waiting:
                # Under the runner's lock: a new attempt of the same job (``_start``) cannot begin
                # between the check and the write, so an older attempt's state never overwrites it.
                with self._lock:
                    if self._live.get(job_id) is not live:
                        with self._unrecorded_changed:
                            if self._unrecorded.get(job_id) is live:
                                del self._unrecorded[job_id]
                        continue
                    if self._retry_once(live):
                        delay = _RETRY_FIRST_S
                        continue
                delay = min(delay * 2, _RETRY_MAX_S)
                break  # the store is still down: the others wait for the next round

    def _retry_once(self, live: _Live) -> bool:
        with live.persist_lock:
            try:
                self.store.put_bytes(self._key(live.record.job_id), live.record.to_json(), "application/json")
            except Exception as exc:
                live.failed_writes += 1
                log.debug("job %s: record still not written: %s", live.record.job_id, exc)
                return False
            self._note_recorded(live)
        return True

    def _flush_unrecorded(self) -> None:
        """One last write of every record the store refused (at shutdown); say which stay unwritten."""
        with self._unrecorded_changed:
            waiting = list(self._unrecorded.values())
        for live in waiting:
            if not self._retry_once(live):
                log.error(
                    "job %s (%s): its %s state could not be recorded before shutdown; the store still "
                    "has an older state and the job is started again on the next start",
                    live.record.job_id,
                    live.record.kind,
                    live.record.state,
                )

    # -- queries ---------------------------------------------------------------------------------
    def _load(self, job_id: str) -> JobRecord | None:
        if not job_id or "/" in job_id or not self.store.exists(self._key(job_id)):
            return None
        return JobRecord.from_json(self.store.get_bytes(self._key(job_id)))

    def get(self, job_id: str) -> JobRecord:
        """The job's record: from the store, or from memory for a job of this process whose latest state
        the store does not have yet (a write failed) or while the store cannot be read."""
        live = self._live.get(job_id)
        if live is not None and live.unrecorded:
            return replace(live.record)
        try:
            record = self._load(job_id)
        except Unavailable:
            if live is None:
                raise
            return replace(live.record)
        if record is None:
            raise NotFound(
                f"no job {job_id!r} on {self.service}", hint="job ids are returned by the Start* calls"
            )
        return record

    def watch(
        self,
        job_id: str,
        after_sequence: int = 0,
        is_active: Callable[[], bool] = lambda: True,
        poll_s: float = 0.5,
    ) -> Iterator[dict[str, Any]]:
        """Progress events after ``after_sequence`` until the job reaches a final state or is interrupted
        by this server's shutdown (the last event then says INTERRUPTED)."""
        live = self._live.get(job_id)
        if live is None:
            record = self.get(job_id)
            # Not run by this process (finished before a restart): its last event is all there is.
            if record.last_progress.get("sequence", 0) > after_sequence:
                yield record.last_progress
            return
        seen = after_sequence
        while is_active():
            with live.changed:
                pending = [e for e in live.events if e["sequence"] > seen]
                if not pending:
                    live.changed.wait(poll_s)
                    continue
            for event in pending:
                seen = event["sequence"]
                yield event
                if event["state"] in WATCH_ENDS:
                    return

    def cancel(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record.state in FINAL_STATES:
            return record
        live = self._live.get(job_id)
        if live is None:
            # Queued or running in a process that no longer exists, and not resumed: cancel in place.
            record.state = CANCELLED
            record.finished = _now()
            self.store.put_bytes(self._key(job_id), record.to_json(), "application/json")
            return record
        live.cancel.set()
        return self.get(job_id)

    def list(self, kind: str = "", state: str = "", limit: int = 100) -> list[JobRecord]:
        records = []
        for key in self.store.list(f"jobs/{self.service}/"):
            try:
                record = JobRecord.from_json(self.store.get_bytes(key))
            except (ValueError, TypeError):
                continue
            if (not kind or record.kind == kind) and (not state or record.state == state):
                records.append(record)
        records.sort(key=lambda r: r.created, reverse=True)
        return records[: limit or 100]

    def wait(self, job_id: str, timeout_s: float | None = None) -> JobRecord:
        """Block until a job this process runs is final (used by tests and the CLI)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for _ in self.watch(job_id, is_active=lambda: deadline is None or time.monotonic() < deadline):
            pass
        return self.get(job_id)

    # -- shutdown --------------------------------------------------------------------------------
    @property
    def busy(self) -> int:
        """Pool threads still running a job: after ``shutdown``, jobs that did not stop in time."""
        with self._lock:
            return self._busy

    def shutdown(self, grace_s: float = 30.0) -> builtins.list[str]:
        """Stop within ``grace_s``: jobs checkpoint and stop, watchers get INTERRUPTED, records are written.

        Queued jobs never start here: they are INTERRUPTED at once. Running jobs are asked to stop (their
        context's ``should_stop``/``check_cancelled``) and waited for until the budget less a reserve;
        one still running then is abandoned: recorded INTERRUPTED, its watchers told, its thread left to
        the process's exit. Nothing stored is lost by that: its outputs are written before its completion
        marker, so the next start resumes it from its last checkpoint, or re-runs it, or reattaches its
        outputs when it finished after all. Returns the ids of the abandoned jobs.
        """
        deadline = time.monotonic() + max(0.0, grace_s)
        record_by = deadline - min(_RECORD_RESERVE_S, max(0.0, grace_s) / 4)
        self.stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        # Under the runner's lock, against ``_run``'s QUEUED -> RUNNING and ``submit``'s queueing (both check
        # ``stopping`` under it): a job queued here now never runs here. Only memory changes under the lock;
        # the records are written (and the watchers told) by a thread bounded by the deadline, because a
        # store that is down can hang a write for its whole timeout.
        with self._lock:
            lives = list(self._live.values())
            queued = [live for live in lives if live.record.state == QUEUED]
            for live in queued:
                # A job cancelled while it waited ends CANCELLED, as it would have when it came to run.
                live.record.state = CANCELLED if live.cancel.is_set() else INTERRUPTED
                if live.record.state == CANCELLED:
                    live.record.finished = _now()
        writers = [self._bounded_writer(self._tell_interrupted, queued)]
        for live in lives:
            while live.record.state == RUNNING and time.monotonic() < record_by:
                with live.changed:
                    live.changed.wait(min(0.1, max(0.0, record_by - time.monotonic())))
        self._closed.set()
        abandoned = [live for live in lives if live.record.state == RUNNING]
        writers.append(self._bounded_writer(self._record_at_shutdown, abandoned))
        for writer in writers:
            writer.join(max(0.0, deadline - time.monotonic()))
        if any(writer.is_alive() for writer in writers):
            log.error(
                "job records were still being written when the shutdown grace ended; the store keeps "
                "their older states, and those jobs start again on the next start"
            )
        return [live.record.job_id for live in abandoned]

    def _bounded_writer(
        self, target: Callable[[builtins.list[_Live]], None], lives: builtins.list[_Live]
    ) -> threading.Thread:
        writer = threading.Thread(
            target=target, args=(lives,), name=f"job-shutdown-{self.service}", daemon=True
        )
        writer.start()
        return writer

    def _tell_interrupted(self, queued: builtins.list[_Live]) -> None:
        """Record and announce the queued jobs' new states (INTERRUPTED, or CANCELLED if asked to)."""
        for live in queued:
            last = live.record.last_progress
            self._emit(
                live.record,
                step=last.get("step", 0),
                total=last.get("total", 0),
                message="cancelled before it started"
                if live.record.state == CANCELLED
                else "queued when the service stopped; starts when it restarts",
                metrics=last.get("metrics", {}),
                force=True,
            )

    def _record_at_shutdown(self, abandoned: builtins.list[_Live]) -> None:
        for live in abandoned:
            if self._interrupt(
                live,
                "did not stop within the shutdown grace: abandoned; resumes from its last checkpoint (or "
                "runs again) when the service restarts",
                only_if=frozenset({RUNNING}),
            ):
                log.warning(
                    "job %s (%s) did not stop within the shutdown grace; recorded INTERRUPTED, it resumes "
                    "on the next start",
                    live.record.job_id,
                    live.record.kind,
                )
        self._flush_unrecorded()
