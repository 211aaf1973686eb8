"""Source diagnosis codes → the five classes of the reference study (NV, BCC, BKL, MEL, SCC).

A mapping says, per source code, which class it becomes (``keep``) or that it is deliberately left
out (``drop``). A code in neither is *unknown*: the importers skip it and report it, because a
silently dropped new code would change the data set without anyone noticing.

The reference study (arXiv 2512.17585) keeps HAM10000's nv, mel, bkl and bcc and drops akiec, df and
vasc; its SCC images come from MILK10K only (SCCKA, squamous cell carcinoma / keratoacanthoma).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import InvalidArgument

# Reason prefixes are shared by importers and the curation report, which groups drops by them.
EXCLUDED = "excluded diagnosis"
UNKNOWN = "unknown diagnosis"


@dataclass(frozen=True)
class DiagnosisMapping:
    """Which source codes become which class and which are dropped; codes compare case-insensitively."""

    keep: Mapping[str, str]
    drop: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        keep = {_normalise(code): label for code, label in self.keep.items()}
        drop = frozenset(_normalise(code) for code in self.drop)
        bad = sorted({label for label in keep.values() if label not in CLASSES})
        if bad:
            raise InvalidArgument(
                f"diagnosis mapping targets unknown class(es) {bad}",
                hint=f"map source codes to one of {', '.join(CLASSES)}, or list them under 'drop'",
            )
        both = sorted(set(keep) & drop)
        if both:
            raise InvalidArgument(f"diagnosis code(s) {both} are both kept and dropped in the mapping")
        object.__setattr__(self, "keep", dict(sorted(keep.items())))
        object.__setattr__(self, "drop", drop)

    def lookup(self, code: str) -> tuple[str | None, str]:
        """``(class, "")`` for a kept code; ``(None, reason)`` for a dropped or unknown one."""
        key = _normalise(code)
        if key in self.keep:
            return self.keep[key], ""
        # Reasons carry the code as the source wrote it, so the report reads like the source.
        shown = str(code).strip() or "(empty)"
        if key in self.drop:
            return None, f"{EXCLUDED}: {shown}"
        return None, f"{UNKNOWN}: {shown}"

    def to_dict(self) -> dict[str, Any]:
        """The form recorded in provenance and hashed into the output address."""
        return {"keep": dict(self.keep), "drop": sorted(self.drop)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiagnosisMapping:
        """``{"keep": {code: class}, "drop": [code, ...]}`` or a flat ``{code: class or None}``."""
        if not isinstance(data, Mapping):
            raise InvalidArgument("a diagnosis mapping must be a mapping of codes to classes")
        if set(data) <= {"keep", "drop"} and isinstance(data.get("keep", {}), Mapping):
            return cls(dict(data.get("keep") or {}), frozenset(_as_codes(data.get("drop") or ())))
        keep = {code: label for code, label in data.items() if label is not None}
        drop = frozenset(code for code, label in data.items() if label is None)
        return cls(keep, drop)


def _normalise(code: str) -> str:
    return str(code).strip().casefold()


def _as_codes(value: Iterable[str] | str) -> list[str]:
    if isinstance(value, str):
        raise InvalidArgument("'drop' must be a list of diagnosis codes, not a string")
    return [str(code) for code in value]


# HAM10000 dx codes. ``scc`` is not a HAM10000 code: the project's phantom data set writes the
# HAM10000 layout and labels its SCC class ``scc``. Keeping it here is harmless for the real data
# (which never contains it) and lets the one importer read both.
HAM10000_MAPPING = DiagnosisMapping(
    keep={"nv": "NV", "mel": "MEL", "bkl": "BKL", "bcc": "BCC", "scc": "SCC"},
    drop=frozenset({"akiec", "df", "vasc"}),
)

# MILK10K ground-truth columns (ISIC 2025 MILK10k challenge).
MILK10K_MAPPING = DiagnosisMapping(
    keep={"NV": "NV", "MEL": "MEL", "BKL": "BKL", "BCC": "BCC", "SCCKA": "SCC"},
    drop=frozenset({"AKIEC", "BEN_OTH", "DF", "INF", "MAL_OTH", "VASC"}),
)


def resolve_mapping(
    mapping: DiagnosisMapping | Mapping[str, Any] | None, default: DiagnosisMapping
) -> DiagnosisMapping:
    """Accept a mapping object, its dict form, or ``None`` for the source's default."""
    if mapping is None:
        return default
    if isinstance(mapping, DiagnosisMapping):
        return mapping
    return DiagnosisMapping.from_dict(mapping)
