"""NVIDIA's StyleGAN2-ADA network pickle -> this project's StyleGAN2 weights (safetensors + config), safely.

The reference study started StyleGAN2-ADA from NVIDIA's FFHQ-256 network (``--resume=ffhq256``), which is
released only as a Python pickle of the training code's modules (``stylegan2-ada-pytorch``: a dict with
``G``, ``D``, ``G_ema``, ``augment_pipe``, ``training_set_kwargs``). Unpickling it the ordinary way runs
code from the file: every module is rebuilt by ``torch_utils.persistence._reconstruct_persistent_obj``,
which executes the module source stored inside the pickle, and any ``__reduce__`` can name ``os.system``.
So this reader never imports or calls anything the file names. Its ``find_class`` (the one hook through
which a pickle gets any class or function: Python docs, ``pickle`` — "Restricting Globals",
https://docs.python.org/3/library/pickle.html#restricting-globals) maps every global to an inert
``Placeholder`` class that only records the arguments and state the file gives it, except the tensor and
array rebuild functions, which are replaced by checked versions: a storage's bytes go through
``torch.load(weights_only=True)``, and a tensor is a view of such a storage. What comes out is a tree of
placeholders holding tensors; the networks' state dicts are read from it by name.

``convert_network_pickle`` then maps NVIDIA's parameter names (``mapping.fc0.weight``,
``synthesis.b4.conv1.affine.weight``, ``synthesis.b8.torgb.weight``, ``b256.conv0.weight``,
``b4.fc.weight`` ...) onto this project's networks (``mapping.py``, ``synthesis.py``,
``discriminator.py``), checks every tensor's shape by loading strictly into freshly built networks, and
writes a ``save_pretrained`` folder (``stylegan2_ada.safetensors`` with ``G_ema.``/``G.``/``D.`` tensors,
``skingenbench_config.json``) that a training request's ``init_checkpoint`` can name, plus
``conversion.json``, the report of what was mapped, checked, dropped or recomputed.

Nothing is dropped silently. FFHQ-256's mapping network has 8 layers and the reference's ``cfg=auto`` run 2:
NVIDIA's resume copied parameters by name and so discarded ``fc2``..``fc7`` without a word. Here the target
depth is the source's unless ``mapping_layers`` asks for fewer; then the layers beyond it are listed as
dropped and the tracked mean ``w_avg`` (the truncation centre, a mean of the 8-layer output) is recomputed
for the shorter network. NVIDIA's fixed ``[1, 3, 3, 1]`` resampling filters are buffers in its modules and
constants in ours: each is checked to be that filter. The services never read pickles (DESIGN.md, rule 7):
only this converter does, from the command line (``skingenbench convert stylegan2-pkl``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skingenbench.services.core.errors import DataIntegrityError, FailedPrecondition, InvalidArgument
from skingenbench.services.core.hashing import sha256_stream
from skingenbench.services.generation.core.generator_config import CONFIG_FILE
from skingenbench.services.generation.core.stylegan2.config import MODEL_FIELDS, PAPER
from skingenbench.services.generation.core.stylegan2.discriminator import Discriminator
from skingenbench.services.generation.core.stylegan2.synthesis import Generator, binomial_filter, channels_at

REPORT_FILE = "conversion.json"
REPORT_FORMAT = "skingenbench.stylegan2_conversion/1"
W_AVG_SAMPLES = (
    10_000  # latents averaged when the mapping's depth changes (seeded: the result is reproducible)
)
_PERSISTENT = "torch_utils.persistence._reconstruct_persistent_obj"


# -- the restricted unpickler --------------------------------------------------------------------------------
class Placeholder:
    """Whatever the file names: records the constructor arguments, ``__setstate__`` and item/append calls the
    pickle makes on it, and does nothing else (no attribute of it is ever called by the loader)."""

    global_name = "?"
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: dict[Any, Any]
    appended: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items={}, appended=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args): nothing more to do
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["appended"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["appended"].extend(values)

    def __repr__(self) -> str:
        return f"<placeholder {self.global_name}>"


_PLACEHOLDERS: dict[str, type[Placeholder]] = {}


def placeholder_class(global_name: str) -> type[Placeholder]:
    """One inert class per global name (made here, with nothing from the file but its name)."""
    if global_name not in _PLACEHOLDERS:
        _PLACEHOLDERS[global_name] = type("Placeholder", (Placeholder,), {"global_name": global_name})
    return _PLACEHOLDERS[global_name]


def _refuse(message: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(message)


def _load_storage(data: Any) -> torch.TypedStorage:
    """``torch.storage._load_from_bytes`` with ``weights_only=True``: a storage's bytes, no code."""
    if not isinstance(data, bytes):
        raise _refuse("a storage must be bytes")
    try:
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - weights_only refusals and corrupt bytes alike
        raise _refuse(f"a storage in the file is not plain tensor data ({type(error).__name__})") from None
    if not isinstance(storage, torch.TypedStorage):
        raise _refuse("a storage in the file is not a tensor storage")
    return storage


def _rebuild_tensor(
    storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any, **_kw: Any
) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` minus hooks and metadata: a view of a checked storage."""
    if not isinstance(storage, torch.TypedStorage):
        raise _refuse("a tensor must view a storage")
    if not (
        isinstance(offset, int)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and all(isinstance(v, int) for v in (*size, *stride))
    ):
        raise _refuse("a tensor's offset, size and stride must be integers")
    try:
        return torch._utils._rebuild_tensor(storage, offset, size, stride)
    except RuntimeError as error:  # a view outside its storage
        raise _refuse(f"a tensor does not fit its storage: {str(error)[:120]}") from None


def _rebuild_parameter(data: Any, *_ignored: Any) -> torch.Tensor:
    """``torch._utils._rebuild_parameter(_with_state)``: the tensor only (no hooks, no state)."""
    if not isinstance(data, torch.Tensor):
        raise _refuse("a parameter must hold a tensor")
    return data


def _rebuild_from_type(func: Any, _new_type: Any, args: Any, _state: Any = None) -> torch.Tensor:
    """``torch._tensor._rebuild_from_type_v2``: only with one of the rebuild functions above."""
    if func not in (_rebuild_tensor, _rebuild_parameter) or not isinstance(args, tuple):
        raise _refuse("a typed tensor must be rebuilt by a tensor rebuild function")
    return func(*args)


class _NdarrayBuild(Placeholder):
    """``numpy.core.multiarray._reconstruct(ndarray, shape, dtype)`` + BUILD: an array from its raw bytes."""

    global_name = "numpy ndarray"

    def __setstate__(self, state: Any) -> None:
        try:
            _version, shape, dtype, fortran, raw = state
            descr = dtype.args[0] if isinstance(dtype, Placeholder) else None
            byteorder = dtype.state[1] if isinstance(dtype, Placeholder) and dtype.state else "="
            if not isinstance(descr, str) or not isinstance(raw, bytes):
                raise TypeError
            order = {"<": "<", ">": ">", "|": "|"}.get(str(byteorder), "=")
            kind = np.dtype(descr).newbyteorder(order)  # type: ignore[arg-type]  # one of numpy's literals
            if kind.hasobject:
                raise TypeError
            array = np.frombuffer(raw, dtype=kind).reshape(shape, order="F" if fortran else "C")
        except (TypeError, ValueError):
            raise _refuse("a numpy array in the file is not plain numeric data") from None
        self.__dict__["array"] = array.copy()


_NUMPY_RECONSTRUCT = ("numpy.core.multiarray", "numpy._core.multiarray")
_REBUILDERS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    **{(module, "_reconstruct"): (lambda *_args: _NdarrayBuild()) for module in _NUMPY_RECONSTRUCT},
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` never imports: the checked tensor rebuilders, else a
    placeholder. ``persistent_load`` is left undefined, so a persistent id is refused (UnpicklingError)."""

    def find_class(self, module: str, name: str) -> Any:
        return _REBUILDERS.get((module, name)) or placeholder_class(f"{module}.{name}")


def load_network_pickle(data: bytes) -> Any:
    """The file's object tree: dicts, lists, placeholders, tensors, numbers and strings."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
    ) as error:
        raise InvalidArgument(f"not a readable network pickle: {str(error)[:200]}", field="file") from None


# -- from the tree to state dicts ------------------------------------------------------------------------------
def _mapping(value: Any) -> dict[Any, Any]:
    """A dict, an OrderedDict/EasyDict placeholder (items set by the pickle or given as pairs), else {}."""
    if isinstance(value, dict):
        return value
    if isinstance(value, Placeholder):
        out = dict(value.items)
        if value.args and isinstance(value.args[0], list):  # OrderedDict([(key, value), ...])
            out.update(pair for pair in value.args[0] if isinstance(pair, tuple) and len(pair) == 2)
        return out
    return {}


def module_state(node: Any) -> tuple[str, dict[str, Any]]:
    """(class name, instance dict) of a pickled module: NVIDIA's persistent objects carry them in the
    ``meta`` argument of ``_reconstruct_persistent_obj`` (whose module source is never run), others in
    their pickled state."""
    if not isinstance(node, Placeholder):
        raise InvalidArgument(f"expected a network module, found {type(node).__name__}", field="file")
    if node.global_name == _PERSISTENT and node.args and isinstance(node.args[0], dict):
        meta = node.args[0]
        name, state = str(meta.get("class_name", "?")), _mapping(meta.get("state"))
    else:
        raw = node.state[0] if isinstance(node.state, tuple) and node.state else node.state
        name, state = node.global_name, _mapping(raw)
    if not any(key in state for key in ("_parameters", "_buffers", "_modules")):
        raise InvalidArgument(f"the file holds a {name} where a network module belongs", field="file")
    return name, state


def state_dict(node: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a pickled module tree under torch's state-dict names (parameters, then buffers)."""
    _, state = module_state(node)
    tensors: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, value in _mapping(state.get(group)).items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{name}"] = value.detach().to(torch.float32).contiguous()
            elif value is not None:
                raise InvalidArgument(f"{prefix}{name} is not a tensor in the file", field="file")
    for name, child in _mapping(state.get("_modules")).items():
        if child is not None:
            tensors.update(state_dict(child, f"{prefix}{name}."))
    return tensors


def plain(value: Any) -> Any:
    """Init kwargs as JSON-able values (EasyDict placeholders as dicts; other placeholders by name)."""
    if isinstance(value, Placeholder):
        if value.items or (value.args and isinstance(value.args[0], list)):
            return {str(k): plain(v) for k, v in _mapping(value).items()}
        return f"<{value.global_name}>"
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else f"<{type(value).__name__}>"


def init_kwargs(node: Any) -> dict[str, Any]:
    _, state = module_state(node)
    kwargs = plain(state.get("_init_kwargs", {}))
    return kwargs if isinstance(kwargs, dict) else {}


# -- NVIDIA's names -> ours --------------------------------------------------------------------------------
def _is_binomial_filter(value: torch.Tensor) -> bool:
    taps = binomial_filter()
    return value.shape == (4, 4) and torch.allclose(value, torch.outer(taps, taps), atol=1e-6)


@dataclasses.dataclass
class Mapped:
    """Our names -> tensors, the fixed filters checked, and the source tensors dropped (by name)."""

    ours: dict[str, torch.Tensor]
    filters_checked: int = 0
    dropped: list[str] = dataclasses.field(default_factory=list)


def _synthesis_layer_name(rest: str) -> str | None:
    return {
        "affine.weight": "conv.affine.weight",
        "affine.bias": "conv.affine.bias",
        "weight": "conv.weight",
        "bias": "bias",
        "noise_strength": "noise_strength",
        "noise_const": "noise_const",
    }.get(rest)


def map_generator(source: Mapping[str, torch.Tensor], mapping_layers: int, what: str) -> Mapped:
    """G / G_ema: every tensor mapped, a checked fixed filter, or (mapping layers past the target depth)
    dropped and named; anything else is refused."""
    out = Mapped({})
    unknown = []
    for name, value in source.items():
        ours: str | None = None
        if m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", name):
            index = int(m[1])
            if index >= mapping_layers:
                out.dropped.append(f"{what}.{name}")
                continue
            ours = f"mapping.layers.{index}.{m[2]}"
        elif m := re.fullmatch(r"mapping\.(embed\.(?:weight|bias)|w_avg)", name):
            ours = f"mapping.{m[1]}"
        elif m := re.fullmatch(r"synthesis\.b(\d+)\.const", name):
            ours = f"synthesis.blocks.{int(math.log2(int(m[1]))) - 2}.const"
        elif re.fullmatch(r"synthesis\.b\d+\.(?:(?:conv[01]|torgb)\.)?resample_filter", name):
            if not _is_binomial_filter(value):
                raise FailedPrecondition(f"{what}.{name} is not the [1, 3, 3, 1] filter this network uses")
            out.filters_checked += 1
            continue
        elif m := re.fullmatch(r"synthesis\.b(\d+)\.(conv[01])\.(.+)", name):
            resolution, block = int(m[1]), int(math.log2(int(m[1]))) - 2
            layer = 0 if resolution == 4 or m[2] == "conv0" else 1
            suffix = _synthesis_layer_name(m[3])
            ours = f"synthesis.blocks.{block}.layers.{layer}.{suffix}" if suffix else None
        elif m := re.fullmatch(r"synthesis\.b(\d+)\.torgb\.(affine\.weight|affine\.bias|weight|bias)", name):
            suffix = {"weight": "conv.weight", "bias": "bias"}.get(m[2], f"conv.{m[2]}")
            ours = f"synthesis.blocks.{int(math.log2(int(m[1]))) - 2}.torgb.{suffix}"
        if ours is None:
            unknown.append(name)
        else:
            out.ours[ours] = value
    if unknown:
        raise FailedPrecondition(
            f"{what} has tensors this converter does not know: {', '.join(sorted(unknown)[:8])}",
            hint="only StyleGAN2-ADA's 'skip' generator (stylegan2-ada-pytorch networks.py) is converted",
        )
    return out


def map_discriminator(source: Mapping[str, torch.Tensor], resolution: int, mapping_layers: int) -> Mapped:
    """D (the 'resnet' architecture): blocks b{R}..b8, the b4 epilogue, the class mapping if conditional."""
    out = Mapped({})
    unknown = []
    top = int(math.log2(resolution))
    for name, value in source.items():
        ours: str | None = None
        if re.fullmatch(r"b\d+\.(?:(?:fromrgb|conv0|conv1|skip)\.)?resample_filter", name):
            if not _is_binomial_filter(value):
                raise FailedPrecondition(f"D.{name} is not the [1, 3, 3, 1] filter this network uses")
            out.filters_checked += 1
            continue
        if m := re.fullmatch(r"b(\d+)\.(fromrgb|conv0|conv1|skip)\.(weight|bias)", name):
            res = int(m[1])
            if res > 4 and (m[2] != "fromrgb" or res == resolution):
                ours = f"blocks.{top - int(math.log2(res))}.{m[2]}.{m[3]}"
        elif m := re.fullmatch(r"b4\.(conv|fc|out)\.(weight|bias)", name):
            ours = f"{m[1]}.{m[2]}"
        elif m := re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", name):
            index = int(m[1])
            if index >= mapping_layers:
                out.dropped.append(f"D.{name}")
                continue
            ours = f"class_mapping.layers.{index}.{m[2]}"
        elif m := re.fullmatch(r"mapping\.embed\.(weight|bias)", name):
            ours = f"class_mapping.embed.{m[1]}"
        if ours is None:
            unknown.append(name)
        else:
            out.ours[ours] = value
    if unknown:
        raise FailedPrecondition(
            f"D has tensors this converter does not know: {', '.join(sorted(unknown)[:8])}",
            hint="only StyleGAN2-ADA's 'resnet' discriminator is converted (a 'skip' D has fromrgb per block)",
        )
    return out


# -- the source's shape, the target config ----------------------------------------------------------------
def _channel_base(channels: dict[int, int], channel_max: int, resolution: int) -> int:
    below = {r: c for r, c in channels.items() if c < channel_max}
    candidates = {c * r for r, c in below.items()}
    base = min(candidates) if candidates else channel_max * resolution
    if any(channels_at(r, base, channel_max) != c for r, c in channels.items()):
        raise FailedPrecondition(f"the generator's channels {channels} follow no channel_base / side rule")
    return base


def source_config(g: Mapping[str, torch.Tensor], d: Mapping[str, torch.Tensor] | None, kwargs: dict) -> dict:
    """The source network's model fields, from its tensors (checked against its init kwargs)."""
    sides = sorted(int(m[1]) for k in g if (m := re.fullmatch(r"synthesis\.b(\d+)\.torgb\.weight", k)))
    if not sides or "mapping.fc0.weight" not in g:
        raise FailedPrecondition(
            "G_ema has no synthesis.b*.torgb / mapping.fc0 weights: not a StyleGAN2 generator"
        )
    resolution = max(sides)
    channels = {r: int(g[f"synthesis.b{r}.torgb.weight"].shape[1]) for r in sides}
    fcs = sorted(int(m[1]) for k in g if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    if fcs != list(range(len(fcs))) or not fcs:
        raise FailedPrecondition(f"the mapping network's layers are not fc0..fcN: {fcs}")
    w_dim = int(g[f"mapping.fc{fcs[-1]}.weight"].shape[0])
    num_classes = int(g["mapping.embed.weight"].shape[1]) if "mapping.embed.weight" in g else 0
    z_dim = int(g["mapping.fc0.weight"].shape[1]) - (w_dim if num_classes else 0)
    channel_max = max(channels.values())
    mapping_kwargs: dict[str, Any] = (
        kwargs["mapping_kwargs"] if isinstance(kwargs.get("mapping_kwargs"), dict) else {}
    )
    synthesis_kwargs: dict[str, Any] = (
        kwargs["synthesis_kwargs"] if isinstance(kwargs.get("synthesis_kwargs"), dict) else {}
    )
    fields = {
        "resolution": resolution,
        "num_classes": num_classes,
        "z_dim": z_dim,
        "w_dim": w_dim,
        "mapping_layers": len(fcs),
        "mapping_lr_multiplier": float(mapping_kwargs.get("lr_multiplier", 0.01)),
        "channel_base": int(
            synthesis_kwargs.get("channel_base", _channel_base(channels, channel_max, resolution))
        ),
        "channel_max": int(synthesis_kwargs.get("channel_max", channel_max)),
        "conv_clamp": float(synthesis_kwargs.get("conv_clamp") or 0.0),
    }
    if d is not None:
        c4 = int(d["b4.conv.weight"].shape[0])
        fields["mbstd_channels"] = int(d["b4.conv.weight"].shape[1]) - c4
    return fields


def _mbstd_group(d_kwargs: dict) -> tuple[int, str]:
    epilogue: dict[str, Any] = (
        d_kwargs["epilogue_kwargs"] if isinstance(d_kwargs.get("epilogue_kwargs"), dict) else {}
    )
    if isinstance(epilogue.get("mbstd_group_size"), int):
        return epilogue["mbstd_group_size"], "the file's D init kwargs"
    return 4, "NVIDIA's DiscriminatorEpilogue default (the file does not say)"


def _recompute_w_avg(generator: Generator) -> torch.Tensor:
    """The mean w of ``W_AVG_SAMPLES`` seeded latents (uniform labels if conditional): the truncation centre
    of the (shortened) mapping network, as its tracked mean would converge to."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(W_AVG_SAMPLES, generator.z_dim, generator=gen) if generator.z_dim else None
    labels = (
        torch.randint(0, generator.num_classes, [W_AVG_SAMPLES], generator=gen)
        if generator.num_classes
        else None
    )
    with torch.no_grad():
        return generator.mapping(z, labels).mean(dim=0)


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def convert_network_pickle(
    path: str | Path,
    out: str | Path,
    *,
    mapping_layers: int = 0,
    mbstd_group_size: int = 0,
    expected_sha256: str = "",
) -> dict[str, Any]:
    """Convert ``path`` (NVIDIA's network pickle) into the folder ``out``; returns the conversion report.

    ``mapping_layers`` 0 keeps the source's depth; fewer drops the later layers (listed in the report) and
    recomputes ``w_avg``; more is refused (there are no weights for them). ``mbstd_group_size`` 0 keeps the
    source's (it shapes no weights; the reference's ``cfg=auto`` used 4)."""
    path, out = Path(path), Path(out)
    if not path.is_file():
        raise InvalidArgument(f"{path} is not a file", field="file")
    digest = _file_sha256(path)
    if expected_sha256 and digest != expected_sha256.lower():
        raise DataIntegrityError(f"{path.name} has sha256 {digest[:12]}…, expected {expected_sha256[:12]}…")
    tree = load_network_pickle(path.read_bytes())
    if not isinstance(tree, dict) or "G_ema" not in tree:
        raise InvalidArgument(
            "the pickle is not a StyleGAN2-ADA network (a dict with G_ema, G, D)", field="file"
        )
    networks = {key: state_dict(tree[key]) for key in ("G_ema", "G", "D") if tree.get(key) is not None}
    ignored = sorted(str(k) for k in tree if k not in networks)
    g_kwargs = init_kwargs(tree["G_ema"])
    d_kwargs = init_kwargs(tree["D"]) if "D" in networks else {}
    found = source_config(networks["G_ema"], networks.get("D"), g_kwargs)
    source_depth = found["mapping_layers"]
    depth = mapping_layers or source_depth
    if depth > source_depth:
        raise InvalidArgument(
            f"mapping_layers {depth} > the source's {source_depth}: there are no weights for the extra layers",
            field="mapping_layers",
        )
    group, group_from = (mbstd_group_size, "asked for") if mbstd_group_size else _mbstd_group(d_kwargs)
    fields = {**found, "mapping_layers": depth, "mbstd_group_size": group}
    fields.setdefault("mbstd_channels", PAPER.mbstd_channels)
    try:
        config = dataclasses.replace(PAPER, **fields)
    except (InvalidArgument, ValueError) as error:
        raise FailedPrecondition(f"the source network does not fit a StyleGAN2Config: {error}") from None

    g_mapped: dict[str, Mapped] = {
        key: map_generator(networks[key], depth, key) for key in ("G_ema", "G") if key in networks
    }
    d_mapped = map_discriminator(networks["D"], config.resolution, depth) if "D" in networks else None
    kwargs: dict[str, Any] = dict(
        z_dim=config.z_dim,
        w_dim=config.w_dim,
        num_classes=config.num_classes,
        mapping_layers=config.mapping_layers,
        resolution=config.resolution,
        channel_base=config.channel_base,
        channel_max=config.channel_max,
        mapping_lr_multiplier=config.mapping_lr_multiplier,
    )
    tensors: dict[str, torch.Tensor] = {}
    recomputed: list[str] = []
    filled: list[str] = []
    for key, mapped in g_mapped.items():
        generator = Generator(**kwargs)
        _load_strict(generator, mapped.ours, key)
        if depth != source_depth:
            generator.mapping.w_avg.copy_(_recompute_w_avg(generator))
            recomputed.append(f"{key}.mapping.w_avg")
        tensors.update({f"{key}.{k}": v.contiguous() for k, v in generator.state_dict().items()})
    if d_mapped is not None:
        discriminator = Discriminator(
            resolution=config.resolution,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            num_classes=config.num_classes,
            mbstd_group_size=config.mbstd_group_size,
            mbstd_channels=config.mbstd_channels,
            mapping_layers=config.mapping_layers,
        )
        if config.num_classes:  # NVIDIA's D mapping tracks no mean w; ours has the (unused) buffer
            d_mapped.ours["class_mapping.w_avg"] = torch.zeros(discriminator.cmap_dim)
            filled.append(
                "D.class_mapping.w_avg (zeros: NVIDIA's D mapping has no tracked mean; D never truncates)"
            )
        _load_strict(discriminator, d_mapped.ours, "D")
        tensors.update({f"D.{k}": v.contiguous() for k, v in discriminator.state_dict().items()})

    from safetensors.torch import save_file
    from skingenbench.services.generation.core.stylegan2.backend import WEIGHTS_FILE, StyleGAN2ADABackend

    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_FILE))
    (out / CONFIG_FILE).write_text(StyleGAN2ADABackend(config).config_json())
    all_mapped: dict[str, Mapped] = {**g_mapped, **({"D": d_mapped} if d_mapped else {})}
    dropped = [name for mapped in all_mapped.values() for name in mapped.dropped]
    current = dataclasses.asdict(config)
    report = {
        "format": REPORT_FORMAT,
        "source": {
            "file": path.name,
            "sha256": digest,
            "networks": sorted(networks),
            "not_converted": ignored,
            "model_fields": {**found, "mbstd_group_size": _mbstd_group(d_kwargs)[0]},
            "G_init_kwargs": g_kwargs,
            "D_init_kwargs": d_kwargs,
        },
        "config": {name: current[name] for name in MODEL_FIELDS},
        "mbstd_group_size_from": group_from,
        "mapping": {
            "source_layers": source_depth,
            "target_layers": depth,
            "dropped": dropped,
            "w_avg": (
                f"recomputed as the mean w of {W_AVG_SAMPLES} seeded latents of the {depth}-layer mapping"
                if recomputed
                else "kept from the source"
            ),
        },
        "tensors": {
            key: {"mapped": len(mapped.ours), "fixed_filters_checked": mapped.filters_checked}
            for key, mapped in all_mapped.items()
        },
        "recomputed": recomputed,
        "filled": filled,
        "G_from_G_ema": "G" not in networks,
        "paper_profile_overrides": {
            name: current[name] for name in MODEL_FIELDS if current[name] != getattr(PAPER, name)
        },
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=1, sort_keys=True))
    return report


def _load_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Every tensor of ``module`` from ``tensors`` and nothing left over, shapes equal."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or extra or wrong:
        raise FailedPrecondition(
            f"{what} does not fit this project's network: missing {missing[:4]}, unknown {extra[:4]}, "
            f"shapes differ for {wrong[:4]}"
        )
    module.load_state_dict(tensors, strict=True)
