"""Sample sizes of the generative metrics: warnings below the documented minimums (FID with fewer images
than feature dimensions, IS below the reference's 5,000, KID away from the reference subsets), refusal
under ``strict_sample_size``, KID's std over several subsets (and none, not a zero, when only one subset
exists), and the real-vs-real baseline at the synthetic sets' N (not N/2 per half)."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import torch
from skingenbench.services.evaluation.core.metrics import METRICS, KIDConfig, compute
from skingenbench.services.evaluation.core.report_markdown import report_markdown
from skingenbench.services.evaluation.core.sample_size import (
    real_baseline_subsets,
    sample_size_warnings,
    sample_sizes,
)
from skingenbench.services.platform.client import watch_job

from skingenbench.api.v1 import common_pb2, evaluation_pb2
from tests.evaluation import test_service
from tests.evaluation.test_extractors import (
    one_blas_thread,  # noqa: F401 - autouse
    phantom_images,
)
from tests.evaluation.test_service import _read_json, _request, _synthetic_manifest

# The service's module fixtures (a real server over a real channel, and its phantom world), shared by name.
world, service = test_service.world, test_service.service

PAPER = {m: METRICS.config(m, "paper") for m in ("fid", "kid", "isc")}


def _features(seed: int, n: int, d: int = 16) -> dict[str, torch.Tensor]:
    return {"f": torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)))}


# -- the rules, on numbers -----------------------------------------------------------------------------------
def test_fid_with_fewer_images_than_feature_dimensions_warns_with_the_numbers():
    warnings = sample_size_warnings(
        ["fid", "kid", "isc"], {"real": 1094, "A2": 120}, {"extractor": 2048, "domain": None}, PAPER
    )
    fid = {w.set: w for w in warnings if w.metric == "fid"}
    assert set(fid) == {"real", "A2"} and fid["A2"].count == 120 and fid["A2"].minimum == 2048
    assert "120 images, fewer than the 2,048 feature dimensions" in fid["A2"].message
    assert "Chong & Forsyth 2020" in fid["A2"].message and "rank at most 119" in fid["A2"].message
    isc = {w.set for w in warnings if w.metric == "isc"}
    assert isc == {"real", "A2"}  # IS below the reference protocol's 5,000
    # At the reference protocol (5,000 per set, KID's 100 subsets of 1,000): nothing to warn about.
    assert not sample_size_warnings(
        ["fid", "kid", "isc"], {"real": 5000, "A2": 5000}, {"extractor": 2048, "domain": None}, PAPER
    )
    # A width not known yet (the domain space before its network is built) is checked later, not guessed.
    assert not sample_size_warnings(["domain_fid"], {"real": 10, "A2": 10}, {"domain": None}, {})
    assert [
        w.metric for w in sample_size_warnings(["domain_fid"], {"real": 600, "A2": 10}, {"domain": 512}, {})
    ] == ["domain_fid"]


def test_kid_away_from_the_reference_subsets_warns_and_the_record_names_the_settings():
    small = {"kid": KIDConfig(subset_size=64, subsets=100)}
    warnings = sample_size_warnings(["kid"], {"real": 500, "A2": 64}, {}, small)
    assert len(warnings) == 1 and "100 subsets of 64 images, not the reference 100 subsets of 1,000" in (
        warnings[0].message
    )
    record = sample_sizes(["fid", "kid"], {"real": 500, "A2": 64}, {"extractor": 2048}, small)
    assert record["counts"] == {"real": 500, "A2": 64} and record["reference_images"] == 5000
    assert (
        record["metrics"]["kid"]["subset_size"] == 64
        and record["metrics"]["fid"]["feature_dimensions"] == 2048
    )


def test_kid_std_is_over_several_subsets_and_absent_when_only_one_exists():
    config = KIDConfig(subset_size=8, subsets=20)
    several = compute("kid", config, _features(0, 20), _features(1, 30), {"kid": "f"}, seed=3)
    assert several["kid_std"] > 0 and several["kid_subsets"] == 20 and not several["kid_single_subset"]
    # Both sets exactly the subset size: every subset is the same pair, its std 0 by construction. No std
    # then (it used to read "± 0.0000"), and the report says why.
    single = compute("kid", config, _features(0, 8), _features(1, 8), {"kid": "f"}, seed=3)
    assert single["kid_std"] is None and single["kid_single_subset"] and single["kid_subsets"] == 1
    assert single["kid_mean"] == pytest.approx(
        compute("kid", KIDConfig(8, 1), _features(0, 8), _features(1, 8), {"kid": "f"}, seed=9)["kid_mean"]
    )
    warnings = sample_size_warnings(["kid"], {"real": 8, "A2": 8}, {}, {"kid": config})
    assert any("only one subset is possible" in w.message for w in warnings)
    domain = compute("domain_kid", config, _features(0, 8), _features(1, 8), {"kid": "f"})
    assert domain["domain_kid_std"] is None and domain["domain_kid_single_subset"]
    report = {
        "real": {"count": 8},
        "sets": {"A2": {"count": 8, **single}},
        "notes": [],
        "warnings": [w.message for w in warnings],
        "provenance": {"extractor": None, "domain_extractor": None},
    }
    markdown = report_markdown(report)
    assert "(one subset: no std)" in markdown and "± 0.0000" not in markdown
    assert "**Sample-size warnings**" in markdown and "only one subset is possible" in markdown


def test_the_real_baseline_subsets_are_disjoint_and_of_the_synthetic_size_when_the_real_set_allows():
    first, second = real_baseline_subsets(100, 30, seed=1)
    assert len(first) == len(second) == 30 and not set(first) & set(second)
    first, second = real_baseline_subsets(40, 30, seed=1)  # 2 × 30 > 40: the largest size possible
    assert len(first) == len(second) == 20 and not set(first) & set(second)


# -- through the service ------------------------------------------------------------------------------------
def test_the_service_reports_sample_sizes_warnings_and_the_baseline_at_the_same_n(service, world):
    stub, channel = service
    store, real_count = world["store"], world["train_count"]
    big = real_count // 2 + 3  # more than half the real set: its baseline can only be at real_count // 2
    many = _synthetic_manifest(store, "many", phantom_images(big, seed=7))
    request = _request(
        world,
        names=("noisy",),
        metrics=["fid", "kid", "isc"],
        options_json=json.dumps({"profile": "tiny", "grid_images": 0, "fid_real_baseline": True}),
    )
    request.synthetic.append(evaluation_pb2.SyntheticSet(name="many", manifest=many, intended_label="MEL"))
    done = watch_job(channel, stub.StartEvaluation(request, timeout=60).job_id, timeout_s=600)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message
    outputs = {o.name: o.uri for o in done.outputs}
    report = _read_json(store, outputs["report_json"])

    assert report["sample_sizes"]["counts"] == {"real": real_count, "noisy": 8, "many": big}
    assert report["sample_sizes"]["metrics"]["fid"]["feature_dimensions"] == 2048
    assert any("synthetic set 'noisy' has 8 images, fewer than the 2,048" in w for w in report["warnings"])
    assert any(f"the real set has {real_count} images" in w for w in report["warnings"])
    # The baseline: two disjoint real subsets of the synthetic set's N (8 each, not real_count // 2), and at
    # the largest size possible, said so, where the real set has fewer than 2N images.
    baselines = report["real"]["real_baselines"]["fid"]
    assert baselines["8"]["count"] == 8 and report["sets"]["noisy"]["fid_real_baseline_count"] == 8
    assert baselines[str(big)]["count"] == real_count // 2 < big
    assert report["sets"]["many"]["fid_real_baseline"] == baselines[str(big)]["value"]
    assert any(f"baseline is at N = {real_count // 2}, below" in w for w in report["warnings"])
    # KID over several subsets (the real set is larger than the subset size): a std that is not zero.
    assert report["sets"]["noisy"]["kid_std"] > 0 and report["sets"]["noisy"]["kid_subsets"] == 10
    markdown = _text(store, outputs["report_md"])
    assert "**Sample-size warnings**" in markdown and "Sample sizes: real" in markdown
    summary = json.loads(done.result_json)
    assert summary["warnings"] == report["warnings"] and summary["sample_sizes"]["below_minimum"]


def test_strict_sample_size_refuses_at_start_and_takes_only_a_boolean(service, world):
    stub, _ = service
    strict = json.dumps({"profile": "tiny", "strict_sample_size": True})
    with pytest.raises(grpc.RpcError) as error:
        stub.StartEvaluation(_request(world, metrics=["fid"], options_json=strict), timeout=30)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (
        "strict_sample_size" in error.value.details() and "2,048 feature dimensions" in error.value.details()
    )
    loose = json.dumps({"profile": "tiny", "strict_sample_size": "yes"})
    with pytest.raises(grpc.RpcError) as error:
        stub.StartEvaluation(_request(world, metrics=["fid"], options_json=loose), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "true or false" in error.value.details()


def _text(store, uri: str) -> str:
    return store.get_bytes(store.key_from_uri(uri)).decode()
