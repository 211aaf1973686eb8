"""``skingenbench convert stylegan2-pkl``: NVIDIA's network pickle layout read without running its code,
mapped onto this project's StyleGAN2 and written as a folder a transfer run starts from.

The pickle here is synthetic but built the way stylegan2-ada-pytorch writes one: a dict of G, D, G_ema
(plus augment_pipe and training_set_kwargs), each module an object whose ``__reduce__`` is
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta`` holding the class name, the
module *source code* (here: code that would write a marker file) and the module's ``__dict__``
(``_parameters``/``_buffers``/``_modules`` OrderedDicts of real torch Parameters, ``_init_kwargs`` as an
EasyDict). The fake ``torch_utils`` and ``dnnlib`` modules exist only while the file is written.
"""

from __future__ import annotations

import ast
import collections
import json
import os
import pickle
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core.stylegan2.backend import StyleGAN2ADABackend
from skingenbench.services.generation.core.stylegan2.config import PAPER, StyleGAN2Config
from skingenbench.services.generation.core.stylegan2.convert import (
    Placeholder,
    convert_network_pickle,
    load_network_pickle,
)
from skingenbench.services.generation.core.stylegan2.discriminator import Discriminator
from skingenbench.services.generation.core.stylegan2.synthesis import Generator, binomial_filter

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(z_dim=8, w_dim=8, num_classes=0, resolution=16, channel_base=64, channel_max=16)
BUFFERS = ("w_avg", "noise_const", "resample_filter")
FILTER = torch.outer(binomial_filter(), binomial_filter())


def _nvidia_g(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our generator's state dict under stylegan2-ada-pytorch's names (the inverse of the converter)."""
    out = {}
    for name, value in ours.items():
        if m := re.fullmatch(r"mapping\.layers\.(\d+)\.(.+)", name):
            out[f"mapping.fc{m[1]}.{m[2]}"] = value
        elif name.startswith("mapping."):
            out[name] = value
        elif m := re.fullmatch(r"synthesis\.blocks\.(\d+)\.(.+)", name):
            res, rest = 4 * 2 ** int(m[1]), m[2]
            if rest == "const":
                out[f"synthesis.b{res}.const"] = value
            elif n := re.fullmatch(r"layers\.(\d)\.(.+)", rest):
                conv = "conv1" if res == 4 or n[1] == "1" else "conv0"
                leaf = {"conv.weight": "weight"}.get(n[2], n[2].replace("conv.affine", "affine"))
                out[f"synthesis.b{res}.{conv}.{leaf}"] = value
                out[f"synthesis.b{res}.{conv}.resample_filter"] = FILTER
            elif n := re.fullmatch(r"torgb\.(.+)", rest):
                leaf = {"conv.weight": "weight"}.get(n[1], n[1].replace("conv.affine", "affine"))
                out[f"synthesis.b{res}.torgb.{leaf}"] = value
            out[f"synthesis.b{res}.resample_filter"] = FILTER
    return out


def _nvidia_d(ours: dict[str, torch.Tensor], resolution: int) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in ours.items():
        if m := re.fullmatch(r"blocks\.(\d+)\.(\w+)\.(\w+)", name):
            res = resolution // 2 ** int(m[1])
            out[f"b{res}.{m[2]}.{m[3]}"] = value
            if m[2] in ("conv1", "skip"):
                out[f"b{res}.{m[2]}.resample_filter"] = FILTER
        else:
            out[f"b4.{name}"] = value
    return out


class _Persistent:
    """Pickles as NVIDIA's persistent objects do: _reconstruct_persistent_obj(meta)."""

    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,))


def _module(class_name: str, tensors: dict[str, torch.Tensor], marker: Path, kwargs=None) -> _Persistent:
    """A module tree from flat dotted names (leaves: Parameters, or buffers for BUFFERS)."""
    params, buffers, children = collections.OrderedDict(), collections.OrderedDict(), {}
    for name, value in tensors.items():
        head, _, rest = name.partition(".")
        if rest:
            children.setdefault(head, {})[rest] = value
        elif head in BUFFERS:
            buffers[head] = value.clone()
        else:
            params[head] = torch.nn.Parameter(value.clone(), requires_grad=False)
    easy = sys.modules["dnnlib.util"].EasyDict
    state = {
        "training": False,
        "_parameters": params,
        "_buffers": buffers,
        "_modules": collections.OrderedDict(
            (k, _module(f"training.networks.{k}", v, marker)) for k, v in children.items()
        ),
        "_init_args": (),
        "_init_kwargs": easy(kwargs or {}),
        "weight_gain": np.float64(0.125),  # NVIDIA keeps numpy scalars on its layers
    }
    source = f"open({str(marker)!r}, 'w').write('the module source ran')\n"
    return _Persistent(
        {"type": "class", "version": 4, "module_src": source, "class_name": class_name, "state": state}
    )


@pytest.fixture
def fake_nvidia_modules(monkeypatch):
    """torch_utils.persistence and dnnlib.util, present only while a test writes its pickle."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # what NVIDIA's does: exec(meta["module_src"]) ...
        exec(meta["module_src"])  # noqa: S102 - here only to show the converter never calls it
        raise AssertionError("never reached in these tests")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    easy = type("EasyDict", (dict,), {"__module__": "dnnlib.util", "__qualname__": "EasyDict"})
    util.EasyDict = easy
    for name, module in {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": persistence,
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": util,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    yield monkeypatch


def _networks(mapping_layers=4, seed=0):
    torch.manual_seed(seed)
    g = Generator(mapping_layers=mapping_layers, **SMALL)
    g.mapping.w_avg.normal_()  # a tracked mean that is not zero, so keeping/recomputing it is visible
    d = Discriminator(
        resolution=16, channel_base=64, channel_max=16, mbstd_group_size=8, mapping_layers=mapping_layers
    )
    return g, d


def write_pickle(tmp_path: Path, monkeypatch, g, d, extra_g=None) -> tuple[Path, Path]:
    """The synthetic NVIDIA pickle of our networks ``g``, ``d``; (file, the marker its module source writes)."""
    marker = tmp_path / "module-source-ran"
    g_names = {**_nvidia_g(g.state_dict()), **(extra_g or {})}
    g_kwargs = {
        "z_dim": 8,
        "c_dim": 0,
        "w_dim": 8,
        "img_resolution": 16,
        "img_channels": 3,
        "mapping_kwargs": sys.modules["dnnlib.util"].EasyDict(num_layers=len(g.mapping.layers)),
        "synthesis_kwargs": sys.modules["dnnlib.util"].EasyDict(
            channel_base=64, channel_max=16, num_fp16_res=4, conv_clamp=256
        ),
    }
    d_kwargs = {
        "c_dim": 0,
        "img_resolution": 16,
        "architecture": "resnet",
        "epilogue_kwargs": sys.modules["dnnlib.util"].EasyDict(mbstd_group_size=8),
    }
    snapshot = {
        "training_set_kwargs": {"path": "ffhq.zip", "resolution": 16},
        "G": _module("training.networks.Generator", g_names, marker, g_kwargs),
        "D": _module("training.networks.Discriminator", _nvidia_d(d.state_dict(), 16), marker, d_kwargs),
        "G_ema": _module("training.networks.Generator", g_names, marker, g_kwargs),
        "augment_pipe": _module("training.augment.AugmentPipe", {"p": torch.zeros([])}, marker),
    }
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL))
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        monkeypatch.delitem(sys.modules, name)  # gone: nothing can resolve them while the file is read
    return path, marker


def test_a_network_pickle_converts_tensor_for_tensor_without_running_its_code(tmp_path, fake_nvidia_modules):
    g, d = _networks()
    path, marker = write_pickle(tmp_path, fake_nvidia_modules, g, d)
    out = tmp_path / "converted"
    report = convert_network_pickle(path, out)
    assert not marker.exists()  # the module source inside the pickle never ran
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules  # nor was anything imported

    assert report["mapping"] == {
        "source_layers": 4,
        "target_layers": 4,
        "dropped": [],
        "w_avg": "kept from the source",
    }
    assert report["source"]["networks"] == ["D", "G", "G_ema"]
    assert report["source"]["not_converted"] == ["augment_pipe", "training_set_kwargs"]
    assert report["config"]["mbstd_group_size"] == 8 and report["config"]["mapping_layers"] == 4
    assert report["tensors"]["G_ema"]["fixed_filters_checked"] > 0
    # What a paper-profile run must set to take this folder (its networks are the file's shape).
    assert report["paper_profile_overrides"]["mapping_layers"] == 4
    assert json.loads((out / "conversion.json").read_text()) == report

    # The folder is a save_pretrained folder: sampling reloads G_ema, a transfer build takes G and D.
    sampler = StyleGAN2ADABackend.from_pretrained(out)
    for name, value in g.state_dict().items():
        assert torch.equal(sampler.G_ema.state_dict()[name], value), name
    images = sampler.sample([0, 1])
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    config = StyleGAN2Config.from_dict(json.loads((out / "skingenbench_config.json").read_text())["config"])
    trainer = StyleGAN2ADABackend(config)
    trainer.build(1, total_steps=2, init_from=str(out))
    assert all(torch.equal(trainer.D.state_dict()[k], v) for k, v in d.state_dict().items())
    assert all(torch.equal(trainer.G.state_dict()[k], v) for k, v in g.state_dict().items())


def test_a_shallower_mapping_names_every_dropped_layer_and_recomputes_w_avg(tmp_path, fake_nvidia_modules):
    g, d = _networks(mapping_layers=4)
    path, _ = write_pickle(tmp_path, fake_nvidia_modules, g, d)
    out = tmp_path / "two-layers"
    report = convert_network_pickle(path, out, mapping_layers=2, mbstd_group_size=4)
    assert report["mapping"]["source_layers"] == 4 and report["mapping"]["target_layers"] == 2
    assert report["mapping"]["dropped"] == [
        "G_ema.mapping.fc2.weight",
        "G_ema.mapping.fc2.bias",
        "G_ema.mapping.fc3.weight",
        "G_ema.mapping.fc3.bias",
        "G.mapping.fc2.weight",
        "G.mapping.fc2.bias",
        "G.mapping.fc3.weight",
        "G.mapping.fc3.bias",
    ]
    assert "recomputed" in report["mapping"]["w_avg"]
    assert report["recomputed"] == ["G_ema.mapping.w_avg", "G.mapping.w_avg"]
    # The reference's cfg=auto shape (2 mapping layers, mbstd group 4) at this size: only the size differs.
    assert set(report["paper_profile_overrides"]) <= {
        "resolution",
        "z_dim",
        "w_dim",
        "channel_base",
        "channel_max",
    }
    sampler = StyleGAN2ADABackend.from_pretrained(out)
    kept = sampler.G_ema.mapping
    assert len(kept.layers) == 2 and torch.equal(kept.layers[1].weight, g.mapping.layers[1].weight)
    assert not torch.equal(kept.w_avg, g.mapping.w_avg)  # the 4-layer mean no longer describes 2 layers
    z = torch.randn(10_000, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(kept.w_avg, kept(z).mean(0), atol=1e-5)
    with pytest.raises(InvalidArgument, match="no weights for the extra layers"):
        convert_network_pickle(path, tmp_path / "deeper", mapping_layers=6)


def test_a_tensor_the_converter_does_not_know_is_refused_by_name(tmp_path, fake_nvidia_modules):
    g, d = _networks()
    path, _ = write_pickle(
        tmp_path, fake_nvidia_modules, g, d, {"synthesis.b8.conv0.mystery": torch.zeros(3)}
    )
    with pytest.raises(FailedPrecondition, match=r"synthesis\.b8\.conv0\.mystery"):
        convert_network_pickle(path, tmp_path / "out")
    assert not (tmp_path / "out" / "stylegan2_ada.safetensors").exists()


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_reduce_is_never_called(tmp_path):
    marker = tmp_path / "pwned"
    tree = load_network_pickle(pickle.dumps({"G_ema": _Evil(marker), "x": [1, 2.5, "s"]}))
    assert not marker.exists()
    assert isinstance(tree["G_ema"], Placeholder) and tree["G_ema"].global_name in (
        "posix.system",
        "os.system",
    )
    assert tree["G_ema"].args == (f"touch {marker}",) and tree["x"] == [1, 2.5, "s"]
    # ... and a file made of it is not a network.
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Evil(marker)}))
    with pytest.raises(InvalidArgument):
        convert_network_pickle(path, tmp_path / "out")
    assert not marker.exists()


def test_storage_bytes_are_read_weights_only(tmp_path):
    """A storage's bytes are a nested torch file: code hidden there is refused, not run."""
    marker = tmp_path / "pwned-storage"

    class Storage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (pickle.dumps(_Evil(marker)),))

    with pytest.raises(InvalidArgument, match="not plain tensor data"):
        load_network_pickle(pickle.dumps({"t": Storage()}))
    assert not marker.exists()
    # A real tensor survives as itself.
    tensor = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(load_network_pickle(pickle.dumps({"t": tensor}))["t"], tensor)


def test_the_cli_converts_and_reports_what_it_dropped(tmp_path, fake_nvidia_modules, capsys):
    from skingenbench.cli import main

    g, d = _networks()
    path, _ = write_pickle(tmp_path, fake_nvidia_modules, g, d)
    out = tmp_path / "cli"
    assert main(["convert", "stylegan2-pkl", str(path), "--out", str(out), "--mapping-layers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "DROPPED" in printed and "G_ema.mapping.fc3.weight" in printed and "w_avg: recomputed" in printed
    assert (out / "stylegan2_ada.safetensors").is_file() and (out / "conversion.json").is_file()
    assert main(["convert", "stylegan2-pkl", str(path), "--out", str(out), "--sha256", "0" * 64]) == 2


def test_no_service_module_reads_pickles():
    """Only the converter (used by the CLI) imports pickle; no service-layer module imports the converter."""
    offenders = []
    for path in (ROOT / "services").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            rel = path.relative_to(ROOT).as_posix()
            if "pickle" in names and rel != "services/generation/core/stylegan2/convert.py":
                offenders.append(f"{rel}: imports pickle")
            if any(n.endswith("stylegan2.convert") for n in names):
                offenders.append(f"{rel}: imports the pickle converter")
    assert offenders == []
    assert (
        PAPER.mapping_layers == 2
    )  # the reference's cfg=auto depth that a converted FFHQ-256 (8) differs from


def test_the_synthetic_pickle_would_run_its_module_source_under_a_plain_unpickler(
    tmp_path, fake_nvidia_modules
):
    """The control: the same bytes through ``pickle.loads`` (the modules importable, as NVIDIA's repo makes
    them) execute the source stored in the file, which is what the restricted reader prevents."""
    g, d = _networks()
    marker = tmp_path / "module-source-ran"
    module = _module("training.networks.Generator", _nvidia_g(g.state_dict()), marker)
    data = pickle.dumps({"G_ema": module})
    with pytest.raises(AssertionError, match="never reached"):
        pickle.loads(data)  # noqa: S301 - the point of the control
    assert marker.exists()
    marker.unlink()
    load_network_pickle(data)
    assert not marker.exists()
