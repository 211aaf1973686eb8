"""The report as a paper uses it: every figure a 300-dpi PNG and a PDF beside the report, referenced from
report.md and report.html, one caption per figure, the pipeline legend at the top, results before
figures before provenance (collapsible), and package versions in the provenance — rendered from a small
synthetic run, plus what GetServiceInfo reports over a real channel."""

from __future__ import annotations

import base64
import importlib.metadata
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from skingenbench.flows.report import build_report, write_report
from skingenbench.services.platform.client import open_channel
from skingenbench.services.platform.store import LocalFolderStore

from skingenbench.api.v1 import common_pb2, preprocessing_pb2_grpc
from tests.common.service_helpers import running

CLASSES = ["NV", "BCC", "BKL", "MEL", "SCC"]
RUN_ID = "synthetic-run"
LIBRARIES = {"torch": "2.14.1", "timm": "1.0.31", "diffusers": "0.36.0", "torch-fidelity": "0.4.0"}


def _png(width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _put(store, key: str, data) -> str:
    payload = data if isinstance(data, bytes) else json.dumps(data).encode()
    return store.uri(store.put_bytes(key, payload).key)


def _test_result(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    predictions = [
        {"image_id": f"img{i}", "label": CLASSES[i % 5], "probs": list(rng.dirichlet(np.ones(5)))}
        for i in range(40)
    ]
    metric = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    return {
        "classes": CLASSES,
        "positive": "MEL",
        "predictions": predictions,
        "confusion_matrix": rng.integers(0, 6, (5, 5)).tolist(),
        "global": {"macro_f1": metric, "balanced_accuracy": metric},
        "melanoma": {"f1": metric, "sensitivity": metric},
        "checkpoint": {"uri": "file:///x/model.safetensors", "sha256": f"{seed:064x}"},
        "data": {"uri": "file:///x/manifest.json", "sha256": "d" * 64},
        "run": {
            "classifier": "resnet18",
            "seed": 0,
            "profile": "tiny",
            "regime": "real",
            "pretrained": False,
        },
    }


def synthetic_run(store) -> dict:
    manifest = {"uri": _put(store, "split/m.json", {"items": []}), "sha256": "a" * 64, "item_count": 10}
    tests = {
        f"{p}/resnet18/0": {"outputs": {"result_json": _put(store, f"t/{p}.json", _test_result(i))}}
        for i, p in enumerate(["A1", "A2", "B1", "B2"])
    }
    comparison = {"delong": {"difference": 0.01, "p_value": 0.5}}
    rng = np.random.default_rng(3)
    points = {name: rng.normal(size=(12, 2)).tolist() for name in ("real", "A2-stylegan2_ada")}
    evaluation_report = {
        "feature_space": {
            "domain": {"points": {"pca": points, "tsne": points}, "pca_explained_variance": [0.5, 0.2]}
        },
        "provenance": {
            "libraries": LIBRARIES,
            "domain_extractor": {"extractor": "domain", "weights_sha256": "e" * 64, "device": "cpu"},
        },
    }
    evaluation_outputs = {
        "report_json": _put(store, "evaluation/e/report.json", evaluation_report),
        # a service H1 inside the report's section: must not become a second document title
        "report_md": _put(
            store, "evaluation/e/report.md", b"# Evaluation of synthetic sets\n\n| a |\n|---|\n| 1 |\n"
        ),
        "pca_domain": _put(store, "evaluation/e/pca_domain.png", _png(64, 48, 1)),
        "tsne_domain": _put(store, "evaluation/e/tsne_domain.png", _png(64, 48, 2)),
        "samples_A2-stylegan2_ada": _put(store, "evaluation/e/samples.png", _png(384, 96, 3)),
    }
    overlays = []
    for index, (label, predicted) in enumerate([("MEL", "NV"), ("BCC", "BCC")]):
        key = f"gradcam/overlays/img{index}.png"
        store.put_bytes(key, _png(56, 56, 10 + index))
        overlays.append(
            {
                "image_id": f"img{index}_gradcam",
                "key": key,
                "label": label,
                "meta": {"explained_class": predicted, "probability": 0.6, "target_layer": "layer4"},
            }
        )
    cam_manifest = {
        "items": overlays,
        "provenance": {"config": {"classifier": "resnet18", "layer": "layer4"}},
    }
    services = {
        "classification": {
            "device": "cuda:0 (NVIDIA H200)",
            "dtype": "float32",
            "code_version": "0.1.0+gabc",
            "libraries": LIBRARIES,
        },
        "preprocessing": {"device": "cpu", "dtype": "", "code_version": "0.1.0+gabc", "libraries": {}},
    }
    return {
        "run_id": RUN_ID,
        "grid": {"name": "tiny-grid", "profile": "tiny", "data": {"source": "phantom"}, "seeds": [0]},
        "notes": [],
        "imported": [{"manifest": manifest}],
        "split": {"manifest": manifest},
        "curation": {"counts": {"MEL": {"train": 4, "val": 1, "test": 1, "total": 6}}},
        "arms": {
            "basic": {
                k: {"manifest": manifest, "result": {"item_count": 10}} for k in ("all", "train", "augmented")
            }
        },
        "generators": {"basic/stylegan2_ada": {"manifest": manifest}},
        "generator_models": {
            "basic/stylegan2_ada": {
                "model": {"uri": "file:///m/model.json", "sha256": "f" * 64},
                "result": {"step": 40},
            }
        },
        "tests": tests,
        "comparisons": {
            "A2/resnet18/0": {"outputs": {"comparison_json": _put(store, "c/a2.json", comparison)}}
        },
        "gradcams": {"A1": {"manifest": {"uri": _put(store, "gradcam/manifest.json", cam_manifest)}}},
        "evaluations": {"basic": {"outputs": evaluation_outputs}},
        "endpoints": {"classification": ["127.0.0.1:1"]},
        "services": services,
    }


@pytest.fixture
def written(tmp_path):
    store = LocalFolderStore(tmp_path / "store")
    report = build_report(store, synthetic_run(store))
    folder = write_report(store, tmp_path / "runs" / RUN_ID, RUN_ID, report)
    return store, report, folder


def test_every_figure_is_a_300_dpi_png_and_a_pdf_locally_and_in_the_store(written):
    store, report, folder = written
    assert len(report.figures) >= 8  # 2 ROC, 2 confusion, PCA, t-SNE, a sample grid, 2 Grad-CAM panels
    for figure in report.figures:
        for suffix in ("png", "pdf"):
            local = (folder / "figures" / f"{figure.name}.{suffix}").read_bytes()
            assert local == store.get_bytes(f"runs/{RUN_ID}/figures/{figure.name}.{suffix}")
        png = (folder / "figures" / f"{figure.name}.png").read_bytes()
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG"
            assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert (folder / "figures" / f"{figure.name}.pdf").read_bytes().startswith(b"%PDF")


def test_plots_are_drawn_for_a_column_and_images_keep_their_pixels(written):
    _, report, folder = written
    by_name = {f.name: f for f in report.figures}
    roc = next(f for n, f in by_name.items() if n.startswith("roc-a"))
    with Image.open(io.BytesIO(roc.png)) as image:
        assert image.width == 1050  # 3.5 in at 300 dpi: one journal column
    confusion = next(f for n, f in by_name.items() if n.startswith("confusion-a"))
    with Image.open(io.BytesIO(confusion.png)) as image:
        assert image.width == 1050  # two pipelines: one column; five: 7 in (test_figures)
    # PCA and t-SNE are redrawn from the stored points (vector PDF), not the service's small PNG
    assert not by_name["pca-domain-basic"].raster and not by_name["tsne-domain-basic"].raster
    assert "pca_domain-basic" not in by_name
    samples = next(f for f in report.figures if f.name.startswith("samples"))
    with Image.open(io.BytesIO(samples.png)) as image:
        assert image.size == (384, 96)  # the service's pixels, untouched


def test_both_documents_reference_every_figure(written):
    _, report, folder = written
    markdown = (folder / "report.md").read_text()
    html = (folder / "report.html").read_text()
    for figure in report.figures:
        assert f"](figures/{figure.name}.png)" in markdown
        assert f"](figures/{figure.name}.pdf)" in markdown
        assert f"href='figures/{figure.name}.pdf'" in html
        assert base64.b64encode(figure.png).decode() in html  # self-contained: the PNG is embedded
    assert "pixelated" not in html and "256px" not in html
    assert "image-rendering:auto" in html


def test_one_caption_per_figure_and_each_gradcam_panel_its_own(written):
    _, report, _ = written
    captions = [f.caption for f in report.figures]
    assert len(set(captions)) == len(captions)
    cams = [f for f in report.figures if f.name.startswith("gradcam")]
    assert len(cams) == 2
    for cam, (true, predicted) in zip(cams, [("MEL", "NV"), ("BCC", "BCC")], strict=True):
        assert "resnet18" in cam.caption and "pipeline A1" in cam.caption
        assert f"true class {true}" in cam.caption and f"predicted {predicted}" in cam.caption
    markdown = report.markdown
    numbered = re.findall(r"\*\*Figure (\d+)\.\*\*", markdown)
    assert numbered == [str(i) for i in range(1, len(report.figures) + 1)]


def test_results_then_figures_then_provenance_and_the_legend_at_the_top(written):
    _, report, folder = written
    markdown = (folder / "report.md").read_text()
    headings = re.findall(r"^## (.+)$", markdown, flags=re.M)
    assert headings[-2:] == ["Figures", "Provenance"]
    assert headings.index("Classifiers") < headings.index("Figures")
    assert re.findall(r"^# ", markdown, flags=re.M) == ["# "]  # the service's H1 was nested
    legend = markdown.index("**Pipeline codes.**")
    assert legend < markdown.index("## Data and splits")
    for meaning in ("**A** = basic", "**B** = advanced", "**1** = real images only", "StyleGAN2-ADA", "DDPM"):
        assert meaning in markdown[legend : markdown.index("## Data and splits")]
    assert "**5** = real + DermGAN" in markdown and "**4** = real + classic augmentation" in markdown
    html = (folder / "report.html").read_text()
    assert html.index("<section id='classifiers'>") < html.index("<section id='figures'>")
    assert html.index("<section id='figures'>") < html.index("<details id='provenance'>")
    assert html.rstrip().endswith("</details></body></html>")  # provenance last, collapsible


def test_provenance_names_packages_devices_and_checksums(written):
    _, report, folder = written
    provenance = report.markdown[report.markdown.index("## Provenance") :]
    for name, version in LIBRARIES.items():
        assert re.search(rf"\| {re.escape(name)} \| {re.escape(version)} \|", provenance)
    assert "cuda:0 (NVIDIA H200)" in provenance and "float32" in provenance
    assert "no torch" in provenance  # the preprocessing service computes without torch
    assert f"`{3:064x}`" in provenance  # a classifier checkpoint's sha256
    assert "`" + "f" * 64 + "`" in provenance  # the generator model's
    assert "`" + "e" * 64 + "`" in provenance  # the feature extractor's weights
    assert "## Provenance" not in report.markdown[: report.markdown.index("## Figures")]
    assert (folder / "grid.yaml").read_text().startswith("name: tiny-grid")


def test_service_info_reports_package_versions_and_dtype(folder_store):
    """GetServiceInfo over a real channel: the versions the report's provenance shows come from here."""
    with running("preprocessing", folder_store) as service, open_channel(service.target) as channel:
        info = preprocessing_pb2_grpc.PreprocessingStub(channel).GetServiceInfo(
            common_pb2.GetServiceInfoRequest(), timeout=10
        )
    for name in ("numpy", "grpcio", "protobuf"):
        assert info.libraries[name] == importlib.metadata.version(name)
    for name in ("torch", "torchvision", "timm", "diffusers", "torch-fidelity", "scikit-learn"):
        assert name in info.libraries  # reported everywhere, "absent" where not installed
    import sys

    assert info.dtype == ("float32" if "torch" in sys.modules else "")
