"""The ASGI app: ``POST /api/recognize/ink`` (``{"strokes": [[[x, y, t], ...], ...]}``),
``POST /api/recognize/audio`` (a WAV body, ``Content-Type: audio/wav``), ``GET /api/models``
and the page at ``/``.

Every bad request is a 4xx whose JSON body is ``{"error": "one line"}``: a body over
``max_bytes`` or ink over ``max_points`` (413), malformed JSON or a field the API does not
know (400: no file paths or other server-side names are taken from a client), the wrong
content type (415), ink or audio the recogniser refuses (422), no model for the modality
(404). At most ``workers`` recognitions run at once and ``queue`` more wait; beyond that a
request is answered 503 at once, so a burst cannot pile up work without bound.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from recog.data.audio import audio_info
from recog.data.utterance import DataError
from recog.inference import Ink, Recognizer

STATIC = Path(__file__).with_name("static")
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many may be in the server at once."""

    max_bytes: int = 8_000_000  # request body
    max_seconds: float = 30.0  # audio duration
    max_points: int = 20_000  # pen points in one ink request
    workers: int = 1  # recognitions running at once
    queue: int = 16  # requests waiting for a worker; beyond: 503

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_seconds", "max_points", "workers"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.queue < 0:
            raise ValueError(f"queue must be >= 0, not {self.queue}")


class Refused(Exception):
    """A request answered with ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Gate:
    """Bounded concurrency: ``workers`` threads recognise, ``queue`` requests wait, the rest
    are refused with 503. Counted on the event loop, so no lock is needed."""

    def __init__(self, workers: int, queue: int):
        self.limiter = anyio.CapacityLimiter(workers)
        self.capacity = workers + queue
        self.admitted = 0

    async def run(self, fn: Callable[[], dict]) -> dict:
        if self.admitted >= self.capacity:
            raise Refused(503, f"busy: {self.admitted} requests in progress or waiting; "
                          "try again shortly")
        self.admitted += 1
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self.limiter)
        finally:
            self.admitted -= 1


def by_modality(recognizers: Sequence[Recognizer]) -> dict[str, Recognizer]:
    """One model per modality ("ink", "speech"); two of one kind is an error."""
    out: dict[str, Recognizer] = {}
    for r in recognizers:
        if r.modality in out:
            raise ValueError(f"two {r.modality} models ({out[r.modality].name}, {r.name}): "
                             "recog-serve takes at most one per modality")
        out[r.modality] = r
    return out


async def _body(request: Request, types: tuple[str, ...], max_bytes: int) -> bytes:
    """The request's body, refused when of another content type, empty or over
    ``max_bytes`` (declared or streamed)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in types:
        raise Refused(415, f"Content-Type must be {types[0]}, not {kind or 'missing'}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise Refused(413, f"request body of {declared} bytes: more than the "
                      f"{max_bytes} allowed")
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_bytes:
                raise Refused(413, f"request body over the {max_bytes} bytes allowed")
    except ClientDisconnect:
        raise Refused(400, "the client went away before the body was sent") from None
    if not data:
        raise Refused(400, "empty request body")
    return bytes(data)


def _ink_request(raw: bytes, max_points: int) -> Ink:
    """The strokes of an ink request's JSON body ``{"strokes": ...}``, checked."""
    try:
        doc = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise Refused(400, f"malformed JSON: {_one_line(e)}") from None
    if not isinstance(doc, dict) or "strokes" not in doc:
        raise Refused(400, 'expected a JSON object {"strokes": [[[x, y, t], ...], ...]}')
    unknown = sorted(set(doc) - {"strokes"})
    if unknown:
        raise Refused(400, f"unknown field {unknown[0]!r}: the body holds only 'strokes'")
    strokes = doc["strokes"]
    if isinstance(strokes, list):
        count = sum(len(s) if isinstance(s, list) else 1 for s in strokes)
        if count > max_points:
            raise Refused(413, f"{count} pen points: more than the {max_points} "
                          "allowed in one request")
    return _checked(lambda: Ink.of(strokes))


def create_app(recognizers: Sequence[Recognizer], limits: Limits = Limits()) -> Starlette:
    """The app serving ``recognizers`` (at most one per modality) under ``limits``."""
    models = by_modality(recognizers)
    gate = Gate(limits.workers, limits.queue)

    def model(modality: str) -> Recognizer:
        if modality not in models:
            raise Refused(404, f"no {modality} model is loaded: start recog-serve with one")
        return models[modality]

    async def recognize_ink(request: Request) -> JSONResponse:
        rec = model("ink")
        ink = _ink_request(await _body(request, ("application/json",), limits.max_bytes),
                           limits.max_points)
        posteriors = request.query_params.get("posteriors") == "1"
        return _answer(rec, await gate.run(
            lambda: _checked(lambda: rec.ink(ink, posteriors).as_dict())))

    async def recognize_audio(request: Request) -> JSONResponse:
        rec = model("speech")
        raw = await _body(request, WAV_TYPES, limits.max_bytes)
        posteriors = request.query_params.get("posteriors", "1") == "1"
        return _answer(rec, await gate.run(lambda: _audio(rec, raw, limits, posteriors)))

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse({"models": [r.info() for r in models.values()],
                             "limits": limits.__dict__})

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refused)
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the "
                             "server's log"}, status_code=500)

    app = Starlette(
        routes=[Route("/", page), Route("/api/models", list_models),
                Route("/api/recognize/ink", recognize_ink, methods=["POST"]),
                Route("/api/recognize/audio", recognize_audio, methods=["POST"]),
                Mount("/static", StaticFiles(directory=STATIC), name="static")],
        exception_handlers={Refused: refused, HTTPException: http_error, Exception: internal})
    app.state.gate = gate  # for monitoring (and tests): gate.admitted requests are in
    return app


def _answer(rec: Recognizer, result: dict) -> JSONResponse:
    return JSONResponse({"model": rec.name, **result})


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _checked(fn: Callable[[], object]) -> object:
    """``fn()``, a refused input (DataError) becoming a 422 with the recogniser's reason."""
    try:
        return fn()
    except DataError as e:
        status = 413 if "max_points" in e.reason or "max_seconds" in e.reason else 422
        raise Refused(status, f"{e.path}: {e.reason}" if e.path.startswith("<")
                      else e.reason) from None


def _audio(rec: Recognizer, raw: bytes, limits: Limits, posteriors: bool) -> dict:
    """Recognise a WAV body: through a private temporary file, so that it is read exactly
    as ``recog-transcribe`` reads a file; errors name ``<audio>``, never that file."""
    with tempfile.TemporaryDirectory(prefix="recog-serve-") as tmp:
        path = Path(tmp) / "audio.wav"
        path.write_bytes(raw)
        try:
            info = audio_info(path)
        except DataError as e:
            raise _refused_audio(e, path) from None
        seconds = info.frames / info.rate
        if not math.isfinite(seconds) or seconds > limits.max_seconds:
            raise Refused(413, f"<audio>: {seconds:.1f} s of audio: more than the "
                          f"{limits.max_seconds:g} s allowed")
        try:
            return rec.file(path, posteriors).as_dict()
        except DataError as e:
            raise _refused_audio(e, path) from None


def _refused_audio(e: DataError, path: Path) -> Refused:
    """A 422 naming ``<audio>``: the server's temporary file is named nowhere."""
    reason = _one_line(ValueError(e.reason)).replace(str(path), "<audio>")
    return Refused(422, f"<audio>: {reason.replace(str(path.parent), '<tmp>')}")
