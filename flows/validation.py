"""A grid checked in full before anything starts: no stack, no Prefect server, no flow run for a typo.

``load_grid`` (grid.py) checks a grid file's shape: fields, the known names, fractions, counts. This module
adds what needs the code of the services, read in-process without starting them (DESIGN.md, rule 5:
registries by name): every preprocessing pipeline, generator and classifier name against its stage's
registry, and every per-name config override against that name's config class at the grid's profile (a
typo such as ``train_stepz`` is refused here, as the service would refuse it minutes later, after the
stack, the server and the earlier stages had run). Then the data folders (when the services read this
machine's disk) and the pipeline selection.

Every problem is one ``GridError`` whose message names the field and says what to do: the command line
prints it as one line and exits 2 (``skingenbench run``), and ``flow`` never sees the grid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from skingenbench.flows.grid import Grid, GridError, load_grid
from skingenbench.flows.sampling_options import check_sampling_options, training_config
from skingenbench.services.core.errors import SkinGenBenchError

EVALUATION_PROFILES = ("tiny", "paper")


def validate_grid(
    grid_spec: str, pipelines: Iterable[str] | None = None, check_data_paths: bool = True
) -> Grid:
    """The grid ``grid_spec`` (a shipped name or a YAML path), checked against the services' registries;
    raises ``GridError`` with a one-line message on the first problem.

    ``pipelines``: the selected pipeline names (``A1``, ``B2`` ...), each of which must be a pipeline of
    the grid. ``check_data_paths``: the data folders are on this machine (the local stack reads them);
    a remote service reads its own disk, so its paths cannot be checked from here.
    """
    grid = load_grid(grid_spec)
    _check_preprocessing(grid)
    _check_generators(grid)
    _check_classifiers(grid)
    _check_evaluation(grid)
    _check_positive(grid)
    _check_phantom(grid)
    if check_data_paths:
        check_data_folders(grid)
    if pipelines is not None:
        check_pipeline_selection(grid, list(pipelines))
    return grid


def pipeline_names(grid: Grid) -> list[str]:
    """Every pipeline (grid row) the grid runs: ``A1``, ``A2`` ... ``B5``."""
    return [name for name, _prep, _extra in grid.pipelines()]


def check_pipeline_selection(grid: Grid, selected: list[str]) -> None:
    known = pipeline_names(grid)
    if not selected:
        raise GridError(f"pipelines: select at least one of {', '.join(known)} (or leave the option out)")
    for name in selected:
        if name not in known:
            raise GridError(
                f"pipelines: {name!r} is not a pipeline of grid {grid.name!r}; choose from {', '.join(known)}"
            )


# -- names and configs against the registries -----------------------------------------------------------


def _check_names_and_configs(
    what: str,
    names: list[str],
    registered: list[str],
    configs: dict[str, Any],
    config_field: str,
    build: Callable[[str, dict[str, Any]], Any],
) -> None:
    for i, name in enumerate(names):
        if name not in registered:
            raise GridError(
                f"{what}[{i}]: {name!r} is not registered with the service (registered: {', '.join(registered)})"
            )
    for name, overrides in configs.items():
        where = f"{config_field}.{name}"
        if name not in names:
            raise GridError(
                f"{where}: {name!r} is not one of this grid's {what} ({', '.join(names)}); "
                "remove the entry or add the name"
            )
        if not isinstance(overrides, dict):
            raise GridError(f"{where}: expected a mapping of config keys to values")
        try:
            build(name, overrides)
        except (SkinGenBenchError, ValueError, TypeError) as error:
            raise GridError(f"{where}: {error}") from error


def _check_preprocessing(grid: Grid) -> None:
    from skingenbench.services.preprocessing.core import pipeline_registry

    def build(name: str, overrides: dict[str, Any]) -> Any:
        return pipeline_registry.pipeline_config(name, grid.profile, **overrides)

    _check_names_and_configs(
        "preprocessing",
        grid.preprocessing,
        pipeline_registry.list_pipelines(),
        grid.preprocessing_config,
        "preprocessing_config",
        build,
    )


def _check_generators(grid: Grid) -> None:
    # Importing the registry imports every backend's module (torch, no weights): a second or two.
    from skingenbench.services.generation.core.registry import GENERATORS

    _check_names_and_configs(
        "generators",
        grid.generators,
        GENERATORS.names(),
        grid.generator_config,
        "generator_config",
        lambda name, overrides: GENERATORS.config(name, grid.profile, training_config(overrides)),
    )
    if problems := check_sampling_options(grid.generator_config):
        raise GridError("; ".join(problems))


def _check_classifiers(grid: Grid) -> None:
    from skingenbench.services.core.classifiers.models import CLASSIFIERS

    _check_names_and_configs(
        "classifiers",
        grid.classifiers,
        CLASSIFIERS.names(),
        grid.classifier_config,
        "classifier_config",
        lambda name, overrides: CLASSIFIERS.config(name, grid.profile, overrides),
    )


def _check_evaluation(grid: Grid) -> None:
    profile = grid.evaluation.get("profile", grid.profile)
    if profile not in EVALUATION_PROFILES:
        raise GridError(
            f"evaluation.profile: must be one of {', '.join(EVALUATION_PROFILES)}, got {profile!r}"
        )


def _check_positive(grid: Grid) -> None:
    """Sizes the flow divides or loops by: zero or negative would fail deep inside a service."""
    for where, value in (
        ("data.width", grid.data.width),
        ("data.height", grid.data.height),
        ("augment_copies", grid.augment_copies),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise GridError(f"{where}: a positive integer, got {value!r}")


# -- data ----------------------------------------------------------------------------------------------


def _required_files(source: str) -> tuple[str, ...]:
    """The files an importer opens first in a source folder (its layout's defaults)."""
    if source == "ham10000":
        from skingenbench.services.data.ham10000 import Ham10000Layout

        return (Ham10000Layout().metadata_csv,)
    if source == "milk10k":
        from skingenbench.services.data.milk10k import Milk10kLayout

        layout = Milk10kLayout()
        return (layout.ground_truth_csv, layout.metadata_csv)
    return ()


def _check_phantom(grid: Grid) -> None:
    """A phantom grid's import options as the preprocessing service checks them (size, tone weights)."""
    if grid.data.source != "phantom":
        if grid.data.ita_bin_weights is not None:
            raise GridError("data.ita_bin_weights: only a phantom data set's skin tones can be chosen")
        return
    from skingenbench.flows.grid import phantom_import_options
    from skingenbench.services.data.operations import phantom_settings

    try:
        phantom_settings(phantom_import_options(grid), grid.data.seed)
    except SkinGenBenchError as error:
        raise GridError(f"data: {error}") from None


def check_data_folders(grid: Grid) -> None:
    """Every non-phantom source's folder exists on this machine and holds its metadata files."""
    from skingenbench.flows.grid import DATA_SOURCES

    sources = [("data", grid.data.source, grid.data.path)]
    for i, extra in enumerate(grid.data.extra_sources):
        where = f"data.extra_sources[{i}]"
        if not isinstance(extra, dict) or set(extra) != {"source", "path"}:
            raise GridError(f"{where}: expected a mapping with exactly 'source' and 'path'")
        if extra["source"] not in DATA_SOURCES or extra["source"] == "phantom":
            raise GridError(f"{where}.source: one of ham10000, milk10k, got {extra['source']!r}")
        sources.append((where, extra["source"], extra["path"]))
    for where, source, path in sources:
        if source == "phantom":
            continue
        folder = Path(path.removeprefix("file://")).expanduser()
        if not folder.is_dir():
            raise GridError(
                f"{where}.path: no folder {str(folder)!r} for source {source}; "
                "download it first (docs/data.md) or fix the path"
            )
        for name in _required_files(source):
            if not (folder / name).is_file():
                raise GridError(
                    f"{where}.path: {str(folder)!r} has no {name}, so it is not a {source} folder (docs/data.md)"
                )
