"""Print the requirements of one of pyproject.toml's extras, expanded, for the image's dependency layers.

The Dockerfile installs dependencies from pyproject.toml alone, before the source is copied, so a source
change rebuilds only the thin layer that installs the project itself (``pip install --no-deps``). pip
cannot list an extra's requirements without building the project, hence this reader: it follows
self-references (``skingenbench[torch,data]``) and prints one requirement a line.

    python3 requirements.py pyproject.toml generation --torch    # the torch pins only
    python3 requirements.py pyproject.toml generation            # everything else (base install too)

``--torch`` splits the torch wheels off into their own layer and index (CPU or CUDA builds come from
different indexes); ``--torch-pins 'torch==X torchvision==Y'`` replaces pyproject's pins where a
mirror lacks the pinned pair. Standard library only: it runs in the bare base image.
"""

from __future__ import annotations

import argparse
import re
import sys

import tomllib

TORCH_PACKAGES = {"torch", "torchvision"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[([^\]]*)\])?")


def _name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(1).lower().replace("_", "-")


def expand(project: dict, extras: list[str]) -> list[str]:
    """The base dependencies plus every requirement the extras reach, in first-seen order."""
    name = project["name"].lower()
    optional = project.get("optional-dependencies", {})
    seen_extras: set[str] = set()
    out: list[str] = list(project.get("dependencies", []))

    def visit(extra: str) -> None:
        if extra in seen_extras:
            return
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r}; extras: {', '.join(sorted(optional))}")
        seen_extras.add(extra)
        for requirement in optional[extra]:
            match = _NAME.match(requirement)
            if match and match.group(1).lower() == name:  # skingenbench[torch,data]
                for inner in filter(None, (e.strip() for e in (match.group(3) or "").split(","))):
                    visit(inner)
            elif requirement not in out:
                out.append(requirement)

    for extra in extras:
        visit(extra)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject")
    parser.add_argument("extras", nargs="*", help="extras to expand (none: the base install)")
    parser.add_argument("--torch", action="store_true", help="print only the torch wheels' pins")
    parser.add_argument("--torch-pins", default="", help="replace pyproject's torch/torchvision pins")
    args = parser.parse_args(argv)
    with open(args.pyproject, "rb") as handle:
        project = tomllib.load(handle)["project"]
    requirements = expand(project, args.extras)
    torch = [r for r in requirements if _name(r) in TORCH_PACKAGES]
    rest = [r for r in requirements if _name(r) not in TORCH_PACKAGES]
    if args.torch and torch and args.torch_pins.strip():
        torch = args.torch_pins.split()
    print("\n".join(torch if args.torch else rest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
