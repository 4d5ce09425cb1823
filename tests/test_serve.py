"""recog-serve's JSON API with starlette's TestClient and, for the load test, uvicorn on
127.0.0.1: the answers are recog-transcribe's on the same input; every bad request is a 4xx
with a one-line JSON message; a full queue is a 503; 8 clients x 50 requests lose nothing."""

import http.client
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("starlette")
pytest.importorskip("httpx")  # starlette's TestClient
import uvicorn  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from recog.cli import transcribe  # noqa: E402
from recog.data.manifest import read_strokes  # noqa: E402
from recog.inference import Recognizer  # noqa: E402
from recog.serve.app import Limits, create_app  # noqa: E402
from recog.serve.command import parser  # noqa: E402
from tests.test_transcribe import ink_checkpoint, speech  # noqa: E402, F401  (fixture)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, speech: tuple  # noqa: F811
           ) -> dict:
    ink_ckpt, ink_paths = ink_checkpoint(tmp_path_factory.mktemp("ink"))
    return {"ink": (ink_ckpt, ink_paths, Recognizer.load(ink_ckpt)),
            "speech": (speech[0], speech[1], Recognizer.load(speech[0]))}


def _client(models: dict, **limits: object) -> TestClient:
    return TestClient(create_app([models["ink"][2], models["speech"][2]], Limits(**limits)))


def _strokes(path: Path) -> list:
    return [s.tolist() for s in read_strokes(path)]


def _cli(ckpt: Path, paths: list[Path], capsys: pytest.CaptureFixture) -> list[dict]:
    transcribe([str(ckpt), *map(str, paths), "--json"])
    return json.loads(capsys.readouterr().out)


def test_models_lists_name_tokens_and_front_end(models: dict) -> None:
    with _client(models) as client:
        r = client.get("/api/models")
        page = client.get("/")
        script = client.get("/static/app.js")
    assert page.status_code == 200 and '<canvas id="pad"' in page.text
    assert script.status_code == 200 and "/api/recognize/ink" in script.text
    assert r.status_code == 200
    got = {m["modality"]: m for m in r.json()["models"]}
    assert got["ink"]["tokens"] == ["<blk>", " ", "a", "b"]  # as ink_checkpoint made it
    assert got["ink"]["front_end"]["front_end"] == "pen" and got["ink"]["characters"]
    assert got["speech"]["front_end"]["front_end"] == "audio" and not got["speech"]["characters"]
    assert got["ink"]["name"] == "ink"  # ink.pt


def test_ink_and_wav_answers_are_recog_transcribes(models: dict,
                                                    capsys: pytest.CaptureFixture) -> None:
    ink_ckpt, ink_paths, _ = models["ink"]
    speech_ckpt, wavs, _ = models["speech"]
    want_ink = _cli(ink_ckpt, ink_paths, capsys)
    want_speech = _cli(speech_ckpt, wavs, capsys)
    with _client(models) as client:
        for path, want in zip(ink_paths, want_ink, strict=True):
            r = client.post("/api/recognize/ink", json={"strokes": _strokes(path)})
            assert r.status_code == 200, r.text
            assert (r.json()["text"], r.json()["tokens"]) == (want["text"], want["tokens"])
            assert [t["frame_start"] for t in r.json()["times"]] == [
                t["frame_start"] for t in want["times"]]
        for path, want in zip(wavs, want_speech, strict=True):
            r = client.post("/api/recognize/audio", content=path.read_bytes(),
                            headers={"Content-Type": "audio/wav"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["text"], body["tokens"]) == (want["text"], want["tokens"])
            assert body["model"] == speech_ckpt.parent.name
            assert len(body["posteriors"][0]) == 1 + len({t for w in want_speech
                                                          for t in w["tokens"]})


def _wav(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV")
    return buf.getvalue()


JSON = {"Content-Type": "application/json"}
WAV = {"Content-Type": "audio/wav"}
LINE = [[[0, 0, 0.0], [5, 10, 0.01], [10, 0, 0.02]], [[20, 0, 0.2], [20, 10, 0.21]]]
BAD = [  # limits, path, body, headers, status, message
    ({}, "/api/recognize/ink", b"{not json", JSON, 400, r"^malformed JSON: "),
    ({}, "/api/recognize/ink", b'{"strokes": [[[NaN, 1, 0]]]}', JSON, 400,
     "NaN is not a JSON number"),
    ({}, "/api/recognize/ink", b'{"strokes": [[[1e999, 1, 0], [2, 2, 1]]]}', JSON, 422,
     r"^<ink>: stroke 0, point 0: a coordinate or time that is not a finite number$"),
    ({}, "/api/recognize/ink", json.dumps({"strokes": LINE}).encode(),
     {"Content-Type": "text/plain"}, 415, "^Content-Type must be application/json, not "
     "text/plain$"),
    ({}, "/api/recognize/ink", json.dumps({"strokes": LINE}).encode(), {}, 415,
     "not missing$"),
    ({}, "/api/recognize/ink", json.dumps({"path": "/etc/passwd"}).encode(), JSON, 400,
     "expected a JSON object"),
    ({}, "/api/recognize/ink", json.dumps({"strokes": LINE, "file": "/etc/passwd"}).encode(),
     JSON, 400, "unknown field 'file'"),
    ({}, "/api/recognize/ink", b"[1, 2]", JSON, 400, "expected a JSON object"),
    ({}, "/api/recognize/ink", b'{"strokes": "abc"}', JSON, 422, "non-empty list of strokes"),
    ({}, "/api/recognize/ink", b'{"strokes": [[[1, 2, 0]], [[1]]]}', JSON, 422,
     "stroke 1 must be"),
    ({}, "/api/recognize/ink", b'{"strokes": [[[1, 2, 1], [1, 3, 0]]]}', JSON, 422,
     "time goes back"),
    ({}, "/api/recognize/ink", b"", JSON, 400, "empty request body"),
    ({"max_points": 4}, "/api/recognize/ink", json.dumps({"strokes": LINE}).encode(), JSON,
     413, "^5 pen points: more than the 4 allowed in one request$"),
    ({"max_bytes": 50}, "/api/recognize/ink", json.dumps({"strokes": LINE}).encode(), JSON,
     413, "more than the 50 allowed$"),
    ({"max_bytes": 50}, "/api/recognize/audio", _wav(1.0), WAV, 413, "more than the 50"),
    ({}, "/api/recognize/audio", b"RIFF....WAVEfmt nonsense", WAV, 422,
     "^<audio>: unreadable audio"),
    ({}, "/api/recognize/audio", _wav(1.0), {"Content-Type": "application/octet-stream"},
     415, "^Content-Type must be audio/wav"),
    ({"max_seconds": 0.5}, "/api/recognize/audio", _wav(1.0), WAV, 413,
     r"^<audio>: 1.0 s of audio: more than the 0.5 s allowed$"),
    ({}, "/api/recognize/audio", _wav(0.001), WAV, 422, "shorter than one"),
    ({}, "/api/recognize/audio", _wav(0.5, rate=1000), WAV, 422, "sample rate 1000 Hz"),
]


@pytest.mark.parametrize("limits, path, body, headers, status, message", BAD,
                         ids=[f"{b[4]}-{b[5][:30]}" for b in BAD])
def test_bad_requests_are_4xx_with_one_line(models: dict, limits: dict, path: str,
                                            body: bytes, headers: dict, status: int,
                                            message: str) -> None:
    import re

    with _client(models, **limits) as client:
        r = client.post(path, content=body, headers=headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert re.search(message, error), error
    assert "\n" not in error and "Traceback" not in r.text and "/tmp" not in error


def test_no_model_for_the_modality_and_wrong_method(models: dict) -> None:
    with TestClient(create_app([models["ink"][2]])) as client:
        r = client.post("/api/recognize/audio", content=_wav(1.0), headers=WAV)
        assert r.status_code == 404 and "no speech model is loaded" in r.json()["error"]
        r = client.get("/api/recognize/ink")
        assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
        assert client.get("/static/../app.py").status_code == 404
    with pytest.raises(ValueError, match="two ink models"):
        create_app([models["ink"][2], models["ink"][2]])


def test_a_full_queue_is_503_and_the_waiting_request_is_answered(models: dict) -> None:
    rec = models["ink"][2]
    entered, release = threading.Event(), threading.Event()

    class Slow:  # the real recogniser, held until released
        modality, name = rec.modality, rec.name

        def info(self) -> dict:
            return rec.info()

        def ink(self, *args: object) -> object:
            entered.set()
            assert release.wait(30)
            return rec.ink(*args)

    body = {"strokes": _strokes(models["ink"][1][0])}
    app = create_app([Slow()], Limits(workers=1, queue=1))  # type: ignore[list-item]
    with TestClient(app) as client:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.post, "/api/recognize/ink", json=body)
            assert entered.wait(30)
            second = pool.submit(client.post, "/api/recognize/ink", json=body)
            for _ in range(3000):  # until the second waits in the queue
                if app.state.gate.admitted == 2:
                    break
                threading.Event().wait(0.01)
            third = client.post("/api/recognize/ink", json=body)
            assert third.status_code == 503 and "busy" in third.json()["error"]
            release.set()
            assert first.result().json()["text"] == "ab"
            assert second.result().json()["text"] == "ab"


def test_load_8_clients_x_50_requests_on_127_0_0_1(models: dict) -> None:
    lines = [_strokes(p) for p in models["ink"][1]]
    texts = ["ab", "ba b", "abba"]
    config = uvicorn.Config(create_app([models["ink"][2]], Limits(workers=2, queue=8)),
                            host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(3000):
            if server.started:
                break
            threading.Event().wait(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]

        def client(c: int) -> list[tuple[int, str, str]]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            out = []
            for k in range(50):
                i = (c + k) % 3
                conn.request("POST", "/api/recognize/ink", json.dumps({"strokes": lines[i]}),
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                out.append((r.status, json.loads(r.read())["text"], texts[i]))
            conn.close()
            return out

        with ThreadPoolExecutor(8) as pool:
            results = [x for chunk in pool.map(client, range(8)) for x in chunk]
    finally:
        server.should_exit = True
        thread.join(30)
    assert len(results) == 400
    assert all(status == 200 and got == want for status, got, want in results)


def test_command_defaults_to_localhost() -> None:
    args = parser().parse_args(["m.pt"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    with pytest.raises(ValueError, match="workers must be positive"):
        Limits(workers=0)


@pytest.mark.parametrize("argv, message", [
    (["--beam", "0"], "argument --beam: a whole number >= 1, not '0'"),  # served greedily
    (["--port", "99999"], "argument --port: a TCP port from 0 to 65535"),  # was a traceback
])
def test_bad_numbers_are_usage_errors_naming_the_flag(argv: list[str], message: str,
                                                      capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        parser().parse_args(["best.pt", *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err
