"""The ``recog-serve`` console verb: load the checkpoints, then serve the app with uvicorn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recog.cli.argtypes import at_least_one, port
from recog.errors import guarded


def parser() -> argparse.ArgumentParser:
    from recog.serve.app import Limits

    d = Limits()
    p = argparse.ArgumentParser(
        prog="recog-serve", description="Live recognition in the browser: a writing pad for "
        "an ink model, a microphone and file drop for a speech model, and a JSON API "
        "(POST /api/recognize/ink, POST /api/recognize/audio, GET /api/models).",
        epilog="Needs the serve extra: pip install 'recog[serve]'. Paths are relative to the "
        "working directory.")
    p.add_argument("checkpoints", nargs="+", type=Path, metavar="CKPT",
                   help="best.pt of recog-train/finetune; at most one ink and one speech model")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: "
                   "this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=port, default=8000)
    p.add_argument("--beam", type=at_least_one, help="beam width (default 1: greedy)")
    p.add_argument("--max-bytes", type=int, default=d.max_bytes, help="largest request body")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds,
                   help="longest audio per request")
    p.add_argument("--max-points", type=int, default=d.max_points,
                   help="most pen points per request")
    p.add_argument("--workers", type=int, default=d.workers, help="recognitions at once")
    p.add_argument("--queue", type=int, default=d.queue,
                   help="requests waiting for a worker; more are answered 503")
    return p


@guarded
def serve(argv: list[str] | None = None) -> None:
    """recog-serve CKPT [CKPT ...] [--host 127.0.0.1] [--port 8000]."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import uvicorn

        from recog.serve.app import Limits, create_app
    except ImportError as e:
        raise SystemExit(f"error: recog-serve needs the serve extra ({e.name} is missing): "
                         "pip install 'recog[serve]'") from None
    from recog.inference import Recognizer

    limits = Limits(args.max_bytes, args.max_seconds, args.max_points, args.workers,
                    args.queue)
    app = create_app([Recognizer.load(c, beam=args.beam) for c in args.checkpoints], limits)
    print(f"recog-serve: http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
