"""``skingenbench reader-study report``: the table and --json from what readers stored; mistakes are one line."""

from __future__ import annotations

import json

from skingenbench.cli import main
from skingenbench.reader_study.study_store import load_answers, save_answers


def test_report_prints_the_figures_and_json(small_study, capsys):
    store, study = small_study
    for name, flip in (("ann", False), ("bob", True)):
        answers = load_answers(store, study.study_id, name)
        for item in study.items:
            wrong = {"real": "synthetic", "synthetic": "real"}[item.truth]
            answers.record(study, item.image_id, wrong if flip else item.truth, "MEL")
        save_answers(store, answers)
    args = ["reader-study", "report", "--study-id", study.study_id, "--store", store.root_uri]
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["readers"]["ann"]["accuracy"]["value"] == 1.0
    assert report["readers"]["bob"]["accuracy"]["value"] == 0.0
    assert report["pooled"]["accuracy"]["successes"] == 6 and report["pooled"]["accuracy"]["total"] == 12
    assert report["pooled"]["diagnosis_synthetic"]["value"] == 1.0  # every image here is a melanoma
    assert report["agreement"]["fleiss_kappa"] == -1.0  # two readers who always disagree, balanced calls
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Fleiss' kappa (real/synthetic calls): -1.000 over 6 images read by all 2 readers" in text
    assert "ann" in text and "0.50 [" in text and "could not tell" in text


def test_unknown_study_and_incomplete_serve_are_one_line_errors(folder_store, capsys):
    assert main(["reader-study", "report", "--study-id", "nope", "--store", folder_store.root_uri]) == 2
    assert "no reader study 'nope'" in capsys.readouterr().err
    assert main(["reader-study", "serve", "--set", "x", "--store", folder_store.root_uri]) == 2
    assert "needs --set and --real" in capsys.readouterr().err


def test_serve_with_a_study_id_alone_serves_the_stored_study(small_study, monkeypatch, capsys):
    import uvicorn
    from fastapi.testclient import TestClient

    store, study = small_study
    started = {}
    # uvicorn.run would block; the app it is handed is then exercised for real through TestClient.
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(app=app, **options))
    args = [
        "reader-study",
        "serve",
        "--study-id",
        study.study_id,
        "--store",
        store.root_uri,
        "--port",
        "8123",
    ]
    assert main(args) == 0
    assert started["port"] == 8123 and started["host"] == "127.0.0.1"
    assert f"reader study {study.study_id}: 6 images" in capsys.readouterr().out
    assert TestClient(started["app"]).get("/api/study").json()["study_id"] == study.study_id
