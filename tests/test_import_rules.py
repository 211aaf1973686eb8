"""The import rule, checked on the source text: every file is parsed with ``ast`` and nothing is imported.

The layers (docs/architecture.md, "The import rule"):

- ``services/core`` (the shared core) and ``services/<stage>/core`` (a stage's core) are pure: no gRPC,
  no generated stubs (``skingenbench.api``), no platform (store, jobs, servers), no service layer of any
  stage, no flows, no CLI. A stage's core may import the shared core and its own core, never another
  stage's core; the shared core imports no stage at all (it is the layer every stage stands on).
- ``services/platform`` may import the shared core, never a stage.
- Nothing imports a top-level ``services`` or ``flows``: they are installed as ``skingenbench.services``
  and ``skingenbench.flows`` only, and a top-level import works from the repository root by accident.

Imports inside functions (lazy imports), relative imports, and ``importlib.import_module`` /
``__import__`` calls with a literal (or f-string) module name count like top-level imports: a lazy import
is still a dependency, it only fails later.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Folder -> the import name it is installed as (setup.py's package-dir mapping); other folders (tests,
# bench) are imported under their own names from the repository root.
INSTALLED_AS = {"services": "skingenbench.services", "flows": "skingenbench.flows"}
SCANNED = ("services", "flows", "skingenbench", "tests", "bench", "setup.py")
# Generated gRPC stubs: not ours to lint, and they import grpc by design.
GENERATED = ("skingenbench/api/v1",)
SKIPPED_FOLDERS = {"__pycache__", ".venv", "build", "node_modules"}

SERVICES = "skingenbench.services"
NOT_STAGES = {"core", "platform"}  # the other children of skingenbench.services are stages
DYNAMIC = "*"  # stands for the formatted part of an f-string module name


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    rule: str
    imported: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] imports {self.imported}"


# -- where a module sits ---------------------------------------------------------------------------------


def module_name(relative: Path) -> str:
    """The import name of a repository file, e.g. services/data/core/splitting.py ->
    skingenbench.services.data.core.splitting."""
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts and parts[0] in INSTALLED_AS:
        parts[0:1] = INSTALLED_AS[parts[0]].split(".")
    return ".".join(parts)


def _services_parts(module: str) -> list[str] | None:
    """The segments after ``skingenbench.services.``, or None outside it."""
    parts = module.split(".")
    if parts[:2] != SERVICES.split(".") or len(parts) < 3:
        return None
    return parts[2:]


def is_shared_core(module: str) -> bool:
    parts = _services_parts(module)
    return parts is not None and parts[0] == "core"


def stage_of(module: str) -> str | None:
    """The stage a module belongs to (its core or its service layer), or None."""
    parts = _services_parts(module)
    if parts is None or parts[0] in NOT_STAGES:
        return None
    return parts[0]


def is_stage_core(module: str) -> bool:
    parts = _services_parts(module)
    return stage_of(module) is not None and parts is not None and len(parts) >= 2 and parts[1] == "core"


def is_platform(module: str) -> bool:
    parts = _services_parts(module)
    return parts is not None and parts[0] == "platform"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# -- what a module imports -------------------------------------------------------------------------------


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(package):
        raise ValueError(f"relative import beyond the top level in {module}")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _literal_module_name(node: ast.expr) -> str | None:
    """A module name given as a string literal, or an f-string with its formatted parts as ``*``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        pieces = [
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else DYNAMIC
            for v in node.values
        ]
        return "".join(pieces)
    return None


def _is_dynamic_import(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str, bool]]:
    """Every module a file may load, anywhere in it: (line, absolute name, written as absolute).

    ``from a.b import c`` yields ``a.b`` and ``a.b.c``: ``c`` may be a submodule, and the rules must see
    ``from skingenbench.services.generation import servicer`` as an import of the servicer.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, True
        elif isinstance(node, ast.ImportFrom):
            absolute = node.level == 0
            if absolute:
                base = node.module or ""
            else:
                base = _resolve_relative(module, is_package, node.level, node.module)
            if base:
                yield node.lineno, base, absolute
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}" if base else alias.name, absolute
        elif isinstance(node, ast.Call) and _is_dynamic_import(node) and node.args:
            name = _literal_module_name(node.args[0])
            if name:
                yield node.lineno, name, True


# -- the rules -------------------------------------------------------------------------------------------


def _core_rule(target: str) -> str | None:
    """What a core (shared or stage) must not import, by rule name."""
    top = target.split(".")[0]
    if top == "grpc" or top.startswith("grpc_"):
        return "core-imports-grpc"
    if _within(target, "skingenbench.api"):
        return "core-imports-stubs"
    if _within(target, f"{SERVICES}.platform"):
        return "core-imports-platform"
    if _within(target, "skingenbench.flows"):
        return "core-imports-flows"
    if _within(target, "skingenbench.cli"):
        return "core-imports-cli"
    parts = _services_parts(target)
    if stage_of(target) is not None and parts is not None and len(parts) >= 2 and parts[1] != "core":
        return "core-imports-service-layer"
    return None


def rules_broken(importer: str, target: str, absolute: bool) -> list[str]:
    broken = []
    if absolute and target.split(".")[0] in INSTALLED_AS:
        broken.append("top-level-services-or-flows")
    if is_shared_core(importer) or is_stage_core(importer):
        rule = _core_rule(target)
        if rule:
            broken.append(rule)
    if is_stage_core(importer) and is_stage_core(target) and stage_of(target) != stage_of(importer):
        broken.append("cross-stage-core")
    if is_shared_core(importer) and is_stage_core(target):
        broken.append("shared-core-imports-stage")
    if is_platform(importer) and stage_of(target) is not None:
        broken.append("platform-imports-stage")
    return broken


def check_source(source: str, module: str, path: str, is_package: bool = False) -> list[Violation]:
    tree = ast.parse(source, filename=path)
    found: dict[tuple[int, str], Violation] = {}
    for line, target, absolute in imported_names(tree, module, is_package):
        for rule in rules_broken(module, target, absolute):
            # One report per line and rule: `from a import b` yields both a and a.b.
            found.setdefault((line, rule), Violation(path, line, rule, target))
    return sorted(found.values(), key=lambda v: (v.path, v.line, v.rule))


def repository_files(root: Path = ROOT) -> Iterator[Path]:
    for entry in SCANNED:
        path = root / entry
        if path.is_file():
            yield path
            continue
        for file in sorted(path.rglob("*.py")):
            relative = file.relative_to(root)
            if SKIPPED_FOLDERS & set(relative.parts):
                continue
            if any(relative.as_posix().startswith(g + "/") for g in GENERATED):
                continue
            yield file


def check_repository(root: Path = ROOT) -> list[Violation]:
    violations = []
    for file in repository_files(root):
        relative = file.relative_to(root)
        violations += check_source(
            file.read_text(encoding="utf-8"),
            module_name(relative),
            relative.as_posix(),
            is_package=file.name == "__init__.py",
        )
    return violations


# -- the tree obeys the rule ------------------------------------------------------------------------------


def test_the_repository_obeys_the_import_rule():
    files = list(repository_files())
    # The scan must see the layers it guards, or it passes by seeing nothing.
    assert any(f.parts[-3:-1] == ("services", "core") for f in files)
    assert any(f.parent.name == "core" and f.parent.parent.parent.name == "services" for f in files)
    assert any(f.parent.name == "platform" for f in files)
    violations = check_repository()
    assert not violations, "import rule broken:\n" + "\n".join(map(str, violations))


# -- the checker catches each rule ------------------------------------------------------------------------

STAGE_CORE = "skingenbench.services.generation.core.sampling"
SHARED_CORE = "skingenbench.services.core.hashing"
PLATFORM = "skingenbench.services.platform.jobs"

PLATFORM_RULE = "core-imports-platform"
BREAKING = [
    # (importer, source, rule)
    (STAGE_CORE, "import grpc\n", "core-imports-grpc"),
    (SHARED_CORE, "from grpc_health.v1 import health\n", "core-imports-grpc"),
    (STAGE_CORE, "from skingenbench.api.v1 import generation_pb2\n", "core-imports-stubs"),
    (SHARED_CORE, "import skingenbench.api.v1.common_pb2 as pb\n", "core-imports-stubs"),
    (STAGE_CORE, "from skingenbench.services.platform.store import ObjectStore\n", "core-imports-platform"),
    (SHARED_CORE, "from skingenbench.services import platform\n", "core-imports-platform"),
    (STAGE_CORE, "from skingenbench.services.generation import servicer\n", "core-imports-service-layer"),
    (STAGE_CORE, "from skingenbench.services.generation.models import x\n", "core-imports-service-layer"),
    (SHARED_CORE, "import skingenbench.services.data.operations\n", "core-imports-service-layer"),
    (STAGE_CORE, "from skingenbench.flows import benchmark\n", "core-imports-flows"),
    (SHARED_CORE, "from skingenbench.cli.data import main\n", "core-imports-cli"),
    (STAGE_CORE, "from skingenbench.services.data.core.splitting import x\n", "cross-stage-core"),
    (STAGE_CORE, "from skingenbench.services.data import core\n", "cross-stage-core"),
    (SHARED_CORE, "from skingenbench.services.evaluation.core import fid\n", "shared-core-imports-stage"),
    (PLATFORM, "from skingenbench.services.classification.core import data\n", "platform-imports-stage"),
    (PLATFORM, "from skingenbench.services.preprocessing import servicer\n", "platform-imports-stage"),
    (PLATFORM, "import_module(f'skingenbench.services.{stage}.servicer')\n", "platform-imports-stage"),
    ("tests.data.test_x", "from services.core.hashing import sha256_file\n", "top-level-services-or-flows"),
    ("bench.run", "import flows.benchmark\n", "top-level-services-or-flows"),
    ("skingenbench.cli.run", "from flows import benchmark\n", "top-level-services-or-flows"),
    # Lazy imports count: they are dependencies that fail later.
    (STAGE_CORE, "def f():\n    import grpc\n    return grpc\n", "core-imports-grpc"),
    (STAGE_CORE, "class C:\n    def m(s):\n        import skingenbench.services.platform\n", PLATFORM_RULE),
    (STAGE_CORE, "def f():\n    return __import__('skingenbench.services.data.core')\n", "cross-stage-core"),
    (SHARED_CORE, "X = importlib.import_module('skingenbench.api.v1.common_pb2')\n", "core-imports-stubs"),
    # Relative imports are resolved before the rules apply.
    (STAGE_CORE, "from ..servicer import GenerationServicer\n", "core-imports-service-layer"),
    (STAGE_CORE, "from ...data.core import splitting\n", "cross-stage-core"),
    (PLATFORM, "from ..generation.core import registry\n", "platform-imports-stage"),
]


@pytest.mark.parametrize(("importer", "source", "rule"), BREAKING)
def test_the_checker_reports_each_broken_rule(importer, source, rule):
    violations = check_source(source, importer, "synthetic.py")
    assert rule in {v.rule for v in violations}, violations
    # The report points at the line that imports.
    line = next(v.line for v in violations if v.rule == rule)
    assert "import" in source.splitlines()[line - 1]


SERVICE_LAYER = "skingenbench.services.generation.servicer"
ALLOWED = [
    (STAGE_CORE, "import numpy as np\nfrom skingenbench.services.core.errors import InvalidArgument\n"),
    (STAGE_CORE, "from skingenbench.services.generation.core.registry import GENERATORS\n"),
    (STAGE_CORE, "from .registry import GENERATORS\nfrom . import ddpm\n"),
    (STAGE_CORE, "def f():\n    import torch\n    return torch\n"),
    (SHARED_CORE, "from skingenbench.services.core.imaging import decoding\n"),
    (PLATFORM, "import grpc\nfrom skingenbench.api.v1 import common_pb2\n"),
    (PLATFORM, "from skingenbench.services.core import errors\n"),
    (SERVICE_LAYER, "import grpc\nfrom skingenbench.services.platform.jobs import JobRunner\n"),
    (SERVICE_LAYER, "from skingenbench.services.generation.core.registry import GENERATORS\n"),
    # A stage's service layer may use another stage's core (the generation job reads phantoms).
    (SERVICE_LAYER, "from skingenbench.services.data.core.phantom import render_phantom\n"),
    ("skingenbench.flows.benchmark", "from skingenbench.services.platform.client import connect\n"),
    ("tests.data.test_x", "from tests.common.phantom_data import phantom_manifests\n"),
    # A string that merely mentions a module is not an import.
    (STAGE_CORE, "HINT = 'start skingenbench.services.platform.server first'\n"),
]


@pytest.mark.parametrize(("importer", "source"), ALLOWED)
def test_the_checker_accepts_what_the_rule_allows(importer, source):
    assert check_source(source, importer, "synthetic.py") == []


def test_package_relative_imports_resolve_from_the_package_itself():
    # In services/generation/core/__init__.py, `from . import x` means skingenbench.services.generation.core.x.
    source = "from .. import servicer\n"
    package = "skingenbench.services.generation.core"
    assert [v.rule for v in check_source(source, package, "x/__init__.py", is_package=True)] == [
        "core-imports-service-layer"
    ]
    assert check_source("from . import registry\n", package, "x/__init__.py", is_package=True) == []


def test_module_names_follow_the_installed_layout():
    assert module_name(Path("services/data/core/splitting.py")) == "skingenbench.services.data.core.splitting"
    assert module_name(Path("services/core/__init__.py")) == "skingenbench.services.core"
    assert module_name(Path("flows/benchmark.py")) == "skingenbench.flows.benchmark"
    assert module_name(Path("skingenbench/cli/data.py")) == "skingenbench.cli.data"
    assert module_name(Path("tests/data/test_phantom.py")) == "tests.data.test_phantom"
    assert module_name(Path("setup.py")) == "setup"
