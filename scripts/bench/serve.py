"""recog-serve's latency: from the arrival of a request (the ink line once its last stroke is
written, or a WAV) to the answer, through uvicorn on 127.0.0.1, against the same recognition
called in-process (``Recognizer``) in the same run; the ratio is the server's overhead.

Models of the recipes' sizes with untrained weights (the time does not depend on them; greedy
decoding): ink as the iam_ondb ``synthetic`` experiment (graves features, 3 x 128 BLSTM,
stack 3) on a line of about 40 characters of the synthetic IAM-OnDB corpus; speech as
conf/model/blstm.yaml (5 x 250 BLSTM, fbank) on 3 s of audio. Goal: median <= 100 ms for
the ink line on the 2-core CPU.

    python scripts/bench/serve.py [--quick] [--json PATH] [--requests N] [--threads T]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402

from recog.config import Config, CorpusConfig, PrepareConfig  # noqa: E402
from recog.data.iamondb import read_iamondb  # noqa: E402
from recog.data.manifest import read_strokes  # noqa: E402
from recog.data.synth.iamondb import InkSynthOptions, generate_iamondb  # noqa: E402
from recog.features.audio import AudioFeatureOptions  # noqa: E402
from recog.features.pen import PenFeatureOptions  # noqa: E402
from recog.inference import Recognizer  # noqa: E402
from recog.models import CTCModel, ModelOptions, save_checkpoint  # noqa: E402
from recog.serve.app import Limits, create_app  # noqa: E402
from recog.tokens import Vocabulary, timit_vocabulary  # noqa: E402


def _config(features: dict, **corpus: object) -> dict:
    cfg = OmegaConf.structured(Config(corpus=CorpusConfig(**corpus),
                                      prepare=PrepareConfig(out="/p")))
    cfg = OmegaConf.merge(cfg, {"features": features})
    return OmegaConf.to_container(cfg)  # type: ignore[return-value]


def _ink(tmp: Path, chars: int) -> tuple[Path, list[list[list[float]]], str]:
    """A checkpoint of the ``synthetic`` experiment's shape and the synthetic line with the
    number of characters nearest ``chars``."""
    opts = InkSynthOptions(n_train_writers=1, n_val1_writers=1, n_val2_writers=1,
                           n_test_writers=1, forms_per_writer=1, eval_forms_per_writer=1,
                           chars_per_line=(chars - 2, chars + 2))
    corpus = read_iamondb(generate_iamondb(tmp / "synth", opts, progress=False))
    lines = [u for split in corpus.splits.values() for u in split]
    line = min(lines, key=lambda u: abs(len(u.text) - chars))
    exp = OmegaConf.load(ROOT / "recipes/iam_ondb/conf/experiment/synthetic.yaml")
    pen = PenFeatureOptions(kind=str(exp.features.pen.kind))
    vocab = Vocabulary.from_symbols(sorted({c for u in lines for c in u.tokens}))
    torch.manual_seed(0)
    model = CTCModel(pen.dim, len(vocab), ModelOptions(hidden=int(exp.model.hidden),
                                                       layers=int(exp.model.layers),
                                                       stack=int(exp.model.stack)))
    ckpt = tmp / "ink" / "best.pt"
    ckpt.parent.mkdir()
    save_checkpoint(ckpt, model.eval(), vocab, _config({"pen": pen.as_dict()},
                                                       name="iamondb", root="/x"))
    return ckpt, [s.tolist() for s in read_strokes(line.source)], line.text


def _speech(tmp: Path, seconds: float) -> tuple[Path, bytes]:
    """A checkpoint of conf/model/blstm.yaml's shape over 61 TIMIT phones, and a WAV."""
    size = OmegaConf.load(ROOT / "conf/model/blstm.yaml")
    audio = AudioFeatureOptions()
    vocab = timit_vocabulary(61)
    torch.manual_seed(0)
    model = CTCModel(audio.dim, len(vocab), ModelOptions(hidden=int(size.hidden),
                                                         layers=int(size.layers)))
    ckpt = tmp / "speech" / "best.pt"
    ckpt.parent.mkdir()
    save_checkpoint(ckpt, model.eval(), vocab, _config({"audio": audio.as_dict()},
                                                       name="timit", root="/x"))
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (200 + 100 * t) * t) + 0.01 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return ckpt, buf.getvalue()


def _stats(ms: list[float]) -> dict:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, int(np.ceil(0.95 * len(ordered))) - 1)]
    return {"median_ms": statistics.median(ordered), "p95_ms": p95, "n": len(ordered)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short line, 1 s, 3 requests")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--requests", type=int, default=30, help="timed requests per input")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    chars, seconds, n = (20, 1.0, 3) if args.quick else (40, 3.0, args.requests)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ink_ckpt, strokes, text = _ink(tmp, chars)
        speech_ckpt, wav = _speech(tmp, seconds)
        ink, speech = Recognizer.load(ink_ckpt), Recognizer.load(speech_ckpt)
        samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
        direct = {"ink": lambda: ink.ink(strokes), "speech": lambda: speech.audio(samples, rate)}
        server = uvicorn.Server(uvicorn.Config(create_app([ink, speech], Limits()),
                                               host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        requests = {"ink": ("/api/recognize/ink", json.dumps({"strokes": strokes}).encode(),
                            "application/json"),
                    "speech": ("/api/recognize/audio?posteriors=0", wav, "audio/wav")}

        def over_http(kind: str) -> None:
            path, body, ctype = requests[kind]
            conn.request("POST", path, body, {"Content-Type": ctype})
            r = conn.getresponse()
            answer = r.read()
            if r.status != 200:
                raise SystemExit(f"{kind}: HTTP {r.status}: {answer[:200]!r}")

        rows = {}
        try:
            for kind in ("ink", "speech"):
                served, called = [], []
                for k in range(n + 1):  # the first of each is a warm-up, not timed
                    for fn, arg, out in ((over_http, kind, served),
                                         (direct[kind], None, called)):
                        start = time.perf_counter()
                        fn(arg) if arg else fn()
                        if k:
                            out.append(1000 * (time.perf_counter() - start))
                rows[kind] = {"server": _stats(served), "direct": _stats(called)}
                rows[kind]["overhead_ratio"] = (rows[kind]["server"]["median_ms"]
                                                / rows[kind]["direct"]["median_ms"])
        finally:
            conn.close()
            server.should_exit = True
            thread.join(30)
    figures = {"ink_line_chars": len(text), "ink_points": sum(len(s) for s in strokes),
               "audio_seconds": seconds, "torch_threads": args.threads, "inputs": rows,
               "ink_goal_median_ms": 100.0,
               "ink_goal_met": rows["ink"]["server"]["median_ms"] <= 100.0,
               "cpu_cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}
    print(f"recog-serve latency, request arrival -> answer ({n} requests each, "
          f"{args.threads} torch thread(s); {os.cpu_count()} cores, load average "
          f"{figures['load_average_1min']:.1f})")
    print(f"{'input':<34} {'server median':>14} {'p95':>8} {'direct median':>14} {'p95':>8} "
          f"{'server/direct':>14}")
    labels = {"ink": f"ink line, {len(text)} chars, {figures['ink_points']} points",
              "speech": f"speech, {seconds:g} s"}
    for kind, row in rows.items():
        s, c = row["server"], row["direct"]
        print(f"{labels[kind]:<34} {s['median_ms']:>12.1f}ms {s['p95_ms']:>6.1f}ms "
              f"{c['median_ms']:>12.1f}ms {c['p95_ms']:>6.1f}ms {row['overhead_ratio']:>14.2f}")
    print(f"goal: ink median <= 100 ms: {'met' if figures['ink_goal_met'] else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
