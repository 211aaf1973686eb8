"""Pieces every stage's servicer shares: service info, registry entries, request decoding."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from skingenbench.services.core.device import describe_device
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.version import code_version
from skingenbench.services.platform.server import ServiceContext

from skingenbench.api.v1 import common_pb2


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
    """Decode a ``*_json`` request field; an empty field is an empty dict."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{field} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be a JSON object, got {type(value).__name__}")
    return value


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
