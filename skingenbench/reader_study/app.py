"""The reader study's web page: one small HTML page (no external scripts or styles: it works offline) and
a JSON API behind it.

``GET /`` the page; ``GET /api/study`` what a reader may know (size, diagnosis choices — never the truth);
``GET /api/next?reader=R`` where R stands (``position`` / ``total``, the next image or ``done``);
``GET /api/image/{image_id}`` an image, re-encoded (``display.py``); ``POST /api/answer`` one answer, saved
to the store before the reply (``study_store.py``). Bad input gets a 4xx and a message: an unknown image is
404, a bad answer value or reader name 400, a changed answer 409.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from skingenbench.reader_study import study_store
from skingenbench.reader_study.answers import validate_reader
from skingenbench.reader_study.display import DEFAULT_SIZE, display_png
from skingenbench.reader_study.page import PAGE
from skingenbench.reader_study.reading_list import Study, reader_order
from skingenbench.services.core.errors import SkinGenBenchError
from skingenbench.services.platform.manifest_io import read_verified
from skingenbench.services.platform.store import ObjectStore

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 409,
    "UNAVAILABLE": 503,
}
IMAGE_CACHE = 256  # display PNGs kept in memory (a 256 px PNG is ~150 kB)


class AnswerBody(BaseModel):
    reader: str
    image_id: str
    call: str
    diagnosis: str | None = None


def create_app(store: ObjectStore, study: Study, *, image_size: int = DEFAULT_SIZE) -> FastAPI:
    app = FastAPI(title=f"SkinGenBench reader study {study.study_id}", docs_url=None, redoc_url=None)
    lock = threading.Lock()  # one answer at a time: a reader's file is read, extended and rewritten
    images: OrderedDict[str, bytes] = OrderedDict()

    @app.exception_handler(SkinGenBenchError)
    async def _refused(_request: Request, exc: SkinGenBenchError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=HTTP_STATUS.get(exc.code, 500))

    def state(reader: str) -> dict:
        answers = study_store.load_answers(store, study.study_id, reader)
        next_id = answers.next_image(reader_order(study, reader))
        answered = len(answers.answers)
        return {
            "reader": reader,
            "total": len(study.items),
            "answered": answered,
            "position": answered + (next_id is not None),
            "image_id": next_id,
            "done": next_id is None,
        }

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/study")
    def about() -> dict:
        return {"study_id": study.study_id, "images": len(study.items), "classes": study.classes}

    @app.get("/api/next")
    def next_image(reader: str) -> dict:
        return state(validate_reader(reader))

    @app.get("/api/image/{image_id}")
    def image(image_id: str) -> Response:
        item = study.item(image_id)  # NotFound (404) for an id outside the study
        with lock:
            png = images.get(image_id)
        if png is None:
            png = display_png(read_verified(store, item.key, item.sha256), image_size)
            with lock:
                images[image_id] = png
                while len(images) > IMAGE_CACHE:
                    images.popitem(last=False)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/answer")
    def answer(body: AnswerBody) -> dict:
        reader = validate_reader(body.reader)
        with lock:
            answers = study_store.load_answers(store, study.study_id, reader)
            if answers.record(study, body.image_id, body.call, body.diagnosis):
                study_store.save_answers(store, answers)  # in the store before the reader sees the next image
        return state(reader)

    return app
