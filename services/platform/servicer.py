"""Pieces every stage's servicer shares: service info, registry entries, request decoding."""

from __future__ import annotations

import json
import sys
from typing import Any

from google.protobuf import json_format
from skingenbench.services.core.device import describe_device
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.json_limits import MAX_FIELD_JSON_BYTES, check_json_bounds
from skingenbench.services.core.version import code_version, installed_versions
from skingenbench.services.platform.server import ServiceContext
from skingenbench.services.platform.store import ObjectStore

from skingenbench.api.v1 import common_pb2

# The distributions whose versions a reader needs to rerun a number (PyPI names, as
# ``importlib.metadata`` knows them); every service reports all of them, "absent" where not installed.
REPORTED_LIBRARIES = (
    "torch",
    "torchvision",
    "timm",
    "diffusers",
    "torch-fidelity",
    "scikit-learn",
    "scikit-image",
    "scipy",
    "numpy",
    "opencv-python-headless",
    "pillow",
    "safetensors",
    "grpcio",
    "protobuf",
)


def library_versions() -> dict[str, str]:
    """Installed versions of ``REPORTED_LIBRARIES``, read from package metadata (nothing is imported)."""
    return installed_versions(REPORTED_LIBRARIES)


def compute_dtype() -> str:
    """The floating-point type torch computes in by default in this process; "" where this service does
    not use torch (torch not loaded: the preprocessing service never imports it, and asking must not)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return ""
    return str(torch.get_default_dtype()).removeprefix("torch.")


def service_info(
    ctx: ServiceContext, registry_names: list[str], device: str | None = None
) -> common_pb2.ServiceInfo:
    return common_pb2.ServiceInfo(
        service=ctx.settings.service_name,
        code_version=code_version(),
        store_uri=ctx.store.root_uri,
        device=device if device is not None else describe_device(),
        job_slots=ctx.runner.slots,
        registry=registry_names,
        libraries=library_versions(),
        dtype=compute_dtype(),
    )


def registry_entry(
    name: str,
    kind: str,
    description: str,
    profiles: dict[str, dict[str, Any]],
    capabilities: dict[str, str] | None = None,
    requirements: list[dict[str, Any]] | None = None,
) -> common_pb2.RegistryEntry:
    return common_pb2.RegistryEntry(
        name=name,
        kind=kind,
        description=description,
        profiles=[
            common_pb2.ProfileConfig(profile=p, config_json=json.dumps(c, sort_keys=True))
            for p, c in profiles.items()
        ],
        capabilities=capabilities or {},
        requirements=[common_pb2.Requirement(**r) for r in requirements or []],
    )


def request_to_dict(message) -> dict[str, Any]:
    """A request as a JSON-ready dict (what the job runner persists and hashes)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def dict_to_request(data: dict[str, Any], message_type):
    return json_format.ParseDict(data, message_type(), ignore_unknown_fields=False)


def parse_json_field(text: str, field: str) -> dict[str, Any]:
    """Decode a ``*_json`` request field; an empty field is an empty dict.

    Its size and nesting are bounded before it is parsed (``MAX_FIELD_JSON_BYTES``, ``MAX_JSON_DEPTH`` in
    ``skingenbench.services.core.json_limits``), so deep nesting is INVALID_ARGUMENT, never a
    RecursionError in the decoder.
    """
    if not text:
        return {}
    check_json_bounds(text, field, MAX_FIELD_JSON_BYTES)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{field} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:  # unreachable within the depth bound; kept so the answer never depends on it
        raise InvalidArgument(f"{field} is nested too deeply", field=field) from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be a JSON object, got {type(value).__name__}")
    return value


def request_key(store: ObjectStore, uri: str, field: str) -> str:
    """The store key a request field names (a URI in the store, or a bare key), or INVALID_ARGUMENT that
    names the field: the key rules (``core/object_keys.py``) say what is wrong, the field says where."""
    try:
        return store.key_from_uri(uri)
    except InvalidArgument as exc:
        raise InvalidArgument(
            f"{field} {uri[:200]!r} is not a valid object reference: {exc.message}",
            hint=exc.hint,
            field=field,
        ) from None


def entry_from_description(description: dict[str, Any]) -> common_pb2.RegistryEntry:
    """A RegistryEntry from a registry's ``describe(name)`` dict."""
    return registry_entry(
        description["name"],
        description["kind"],
        description.get("description", ""),
        description.get("profiles", {}),
        {k: str(v) for k, v in description.get("capabilities", {}).items()},
        description.get("requirements", []),
    )


def list_response(describe: Any, names: list[str]) -> common_pb2.ListRegistryResponse:
    return common_pb2.ListRegistryResponse(entries=[entry_from_description(describe(n)) for n in names])
