"""The report's first lines: where a run's models started from, and where that departs from the reference.

The reference study fine-tuned all five classifiers from torchvision's ImageNet-1k weights and started
StyleGAN2-ADA from NVIDIA's FFHQ-256 network. A run that trained a classifier from random init (the tiny
profile without weights files, or ``pretrained: "none"`` asked for explicitly) or a generator from scratch
says so here, at the top of the report, not only deep in ``results.json``. Everything is read from what the
services stored: each test result's ``run.pretrained_record`` (the training job's record of its weights) and
each generator's model record (``provenance.config.init``: empty for a run from scratch).
"""

from __future__ import annotations

import json
from typing import Any

from skingenbench.services.platform.store import ObjectStore

# Generators the reference started from pretrained weights (and from which ones).
REFERENCE_TRANSFER = {"stylegan2_ada": "NVIDIA's FFHQ-256 network"}
MODEL_RECORD = "model.json"


def _json(store: ObjectStore, uri: str) -> dict[str, Any]:
    try:
        return json.loads(store.get_bytes(store.key_from_uri(uri)))
    except Exception:  # noqa: BLE001 - a report line says "unknown" rather than failing the report
        return {}


def _classifier_start(run: dict[str, Any]) -> str:
    record = run.get("pretrained_record") or {}
    if run.get("pretrained") is True or record.get("pretrained") is True:
        source = record.get("source", "file")
        if source == "file":
            checked = record.get("verified_by") or "no checksum vouches for it"
            return f"ImageNet weights from {record.get('file', '?')} (sha256 {str(record.get('sha256', ''))[:12]}…; {checked})"
        return f"ImageNet weights ({source} {record.get('tag', '')})".rstrip()
    if record.get("requested") == "none":
        return "random init, as requested (pretrained 'none')"
    if run.get("pretrained") is False:
        return f"random init (no weights file; the {run.get('profile', '?')} profile allows it)"
    return "unknown (the result does not say)"


def classifier_starts(store: ObjectStore, tests: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """classifier -> how its runs started -> the cells (pipeline/seed) that started so."""
    starts: dict[str, dict[str, list[str]]] = {}
    for key, test in sorted(tests.items()):
        result = _json(store, test.get("outputs", {}).get("result_json", ""))
        run = result.get("run", {})
        classifier = run.get("classifier") or key.split("/")[1 if key.count("/") >= 1 else 0]
        cell = "/".join(part for i, part in enumerate(key.split("/")) if i != 1)
        starts.setdefault(classifier, {}).setdefault(_classifier_start(run), []).append(cell)
    return starts


def generator_starts(store: ObjectStore, generators: dict[str, Any]) -> dict[str, str]:
    """ "<arm>/<generator>" -> "trained from scratch" or "transferred from <uri>" (from the model record)."""
    out = {}
    for key, sampled in sorted(generators.items()):
        model_uri = str((sampled.get("result") or {}).get("model_uri", ""))
        if not model_uri:
            out[key] = "unknown (no model record)"
            continue
        uri = model_uri if model_uri.endswith(MODEL_RECORD) else f"{model_uri.rstrip('/')}/{MODEL_RECORD}"
        record = _json(store, uri)
        if not record:
            out[key] = "unknown (no model record)"
            continue
        init = (record.get("provenance", {}).get("config", {}) or {}).get("init") or {}
        out[key] = f"transferred from {init['uri']}" if init.get("uri") else "trained from scratch"
    return out


def departure_lines(store: ObjectStore, run: dict[str, Any]) -> list[str]:
    """Markdown lines for the top of the report: every classifier's and generator's starting point, with the
    departures from the reference marked."""
    lines = [
        "",
        "**Where the models started** (the reference: torchvision ImageNet-1k weights for all five "
        "classifiers; StyleGAN2-ADA transferred from FFHQ-256):",
        "",
    ]
    for classifier, starts in classifier_starts(store, run.get("tests", {})).items():
        for start, cells in starts.items():
            departs = not start.startswith("ImageNet weights")
            flag = "**departs from the reference:** " if departs else ""
            lines.append(f"- {flag}classifier `{classifier}`: {start} — {len(cells)} run(s)")
    for key, start in generator_starts(store, run.get("generators", {})).items():
        generator = key.split("/")[-1]
        reference = REFERENCE_TRANSFER.get(generator)
        flag = "**departs from the reference:** " if reference and start == "trained from scratch" else ""
        note = f" (the reference transferred from {reference})" if flag else ""
        lines.append(f"- {flag}generator `{key}`: {start}{note}")
    if len(lines) == 3:
        return []
    return [*lines, ""]
