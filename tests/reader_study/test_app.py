"""The reader page's API through FastAPI's TestClient: a whole reading lands in the store (a folder store and
moto's S3 server), bad input is a 4xx with a message, and nothing the page receives gives the truth away."""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from skingenbench.reader_study.app import create_app
from skingenbench.reader_study.study_store import answers_key, create_or_resume_study

from .conftest import write_sets


@pytest.fixture(params=["folder", "s3"])
def served(request):
    store = request.getfixturevalue(f"{request.param}_store")
    syn, real = write_sets(store, {"MEL": 4}, {"MEL": 4})
    study = create_or_resume_study(store, syn, real, count=8, seed=0)
    return store, study, TestClient(create_app(store, study, image_size=48))


def test_a_reader_completes_a_reading_and_every_answer_is_stored_at_once(served):
    store, study, client = served
    assert "Real or synthetic?" in client.get("/").text
    about = client.get("/api/study").json()
    assert about == {"study_id": study.study_id, "images": 8, "classes": ["NV", "BCC", "BKL", "MEL", "SCC"]}
    state = client.get("/api/next", params={"reader": "ann"}).json()
    seen = []
    while not state["done"]:
        assert state["position"] == len(seen) + 1 and state["total"] == 8
        image = client.get(f"/api/image/{state['image_id']}")
        assert image.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(image.content)).size == (48, 48)  # real JPEGs and synthetic PNGs alike
        call = "synthetic" if len(seen) % 2 else "real"
        reply = client.post(
            "/api/answer",
            json={"reader": "ann", "image_id": state["image_id"], "call": call, "diagnosis": "MEL"},
        )
        assert reply.status_code == 200, reply.text
        seen.append(state["image_id"])
        stored = json.loads(store.get_bytes(answers_key(study.study_id, "ann")))
        assert [a["image_id"] for a in stored["answers"]] == seen  # in the store before the next image
        state = reply.json()
    assert state == {
        "reader": "ann",
        "total": 8,
        "answered": 8,
        "position": 8,
        "image_id": None,
        "done": True,
    }
    assert sorted(seen) == sorted(i.image_id for i in study.items)


def test_bad_input_is_refused_with_a_message(served):
    store, study, client = served
    first = client.get("/api/next", params={"reader": "bob"}).json()["image_id"]
    cases = [
        (client.get("/api/image/not-an-id"), 404, "not part of study"),
        (
            client.post("/api/answer", json={"reader": "bob", "image_id": "nope", "call": "real"}),
            404,
            "not part",
        ),
        (
            client.post("/api/answer", json={"reader": "bob", "image_id": first, "call": "maybe"}),
            400,
            "not one of",
        ),
        (
            client.post(
                "/api/answer", json={"reader": "bob", "image_id": first, "call": "real", "diagnosis": "XX"}
            ),
            400,
            "diagnosis",
        ),
        (
            client.post("/api/answer", json={"reader": "../x", "image_id": first, "call": "real"}),
            400,
            "reader name",
        ),
        (client.get("/api/next", params={"reader": ""}), 400, "reader name"),
    ]
    for reply, status, message in cases:
        assert reply.status_code == status, reply.text
        assert message in reply.json()["error"]
    assert not store.exists(answers_key(study.study_id, "bob"))  # nothing refused was stored
    assert client.post("/api/answer", json={"reader": "bob"}).status_code == 422  # fields missing

    body = {"reader": "bob", "image_id": first, "call": "real"}
    assert client.post("/api/answer", json=body).json()["answered"] == 1
    assert client.post("/api/answer", json=body).json()["answered"] == 1  # a repeated request changes nothing
    changed = client.post("/api/answer", json={**body, "call": "synthetic"})
    assert changed.status_code == 409 and "cannot be changed" in changed.json()["error"]


def test_nothing_served_names_the_truth(served):
    _store, study, client = served
    page = client.get("/").text
    replies = [client.get("/api/study").text, client.get("/api/next?reader=cy").text]
    for item in study.items:
        assert item.key not in page and item.image_id not in page
        for text in replies:  # no key (sets/syn/… vs sets/real/…), no truth, no source
            assert item.key not in text and '"real"' not in text and '"synthetic"' not in text
            assert f'"{item.source}"' not in text
