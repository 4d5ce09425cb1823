"""Console entry points, one per verb. Only this package (``recog.cli``) touches Hydra: it
composes the config, checks it against the schema and hands the typed ``Config`` on."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from recog import pipeline
from recog.atomic import atomic_write_text
from recog.cli import commandline
from recog.cli.argtypes import at_least_one
from recog.cli.schema import check_keys, register
from recog.config import Config
from recog.data.limits import set_limits
from recog.data.utterance import DataError
from recog.distributed import env_world
from recog.errors import guarded
from recog.lockfile import exp_lock
from recog.report import format_speakers, format_tuning
from recog.threads import set_threads

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
register()


def _typed(cfg: DictConfig) -> Config:
    """The typed config; its input limits (``data.max_seconds``/``max_points``) applied."""
    c: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    set_limits(c.data.max_seconds, c.data.max_points)
    return c


def _logging(log_file: Path | None = None) -> None:
    """Log to stdout (and ``log_file``); under torchrun only rank 0 logs below warnings."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    main = env_world().is_main
    if log_file is not None and main:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO if main else logging.WARNING, format="%(message)s",
                        handlers=handlers, force=True)


def _verb(fn: Callable[[DictConfig], None]) -> Callable[[], None]:
    """A Hydra entry point whose failures end the run with one plain line (recog.errors);
    its ``--help`` and ``+experiment=`` are read first (``recog.cli.commandline``), and a key the
    schema does not know is an error, ``+`` or not."""

    @guarded
    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
    @functools.wraps(fn)
    def main(cfg: DictConfig) -> None:
        def checked(cfg: DictConfig) -> None:
            check_keys(cfg)
            pipeline.check_choices(_typed(cfg))
            fn(cfg)

        guarded(checked)(cfg)

    @functools.wraps(fn)
    def entry() -> None:
        args = sys.argv[1:]
        if "--help" in args or "-h" in args:
            print(commandline.usage(fn.__name__, fn.__doc__ or ""))
            return
        sys.argv[1:] = guarded(commandline.with_experiment)(args)
        main()

    return entry


@_verb
def prepare(cfg: DictConfig) -> None:
    """recog-prepare: read (or synthesise) a corpus and write <split>.jsonl + summary."""
    _logging()
    summary = pipeline.prepare(_typed(cfg))
    print(pipeline.format_summary(summary))


@_verb
def features(cfg: DictConfig) -> None:
    """recog-features: build the feature caches of the training, dev and decode splits."""
    _logging()
    c = _typed(cfg)
    set_threads(c.trainer.num_threads)  # torch's one per core: 30x slower on a busy machine
    for split in dict.fromkeys([c.corpus.train_split, c.corpus.dev_split, *c.decode_splits]):
        cache = pipeline.features(c, split)
        print(f"{split}: {len(cache)} utterances, {int(cache.lengths.sum())} frames x "
              f"{cache.dim} -> {cache.index_path}")
        for e in cache.bad.values():  # only with data.skip_bad=true
            print(f"  skipped: {e}")


@_verb
def train(cfg: DictConfig) -> None:
    """recog-train: train a model into exp_dir (best.pt, last.pt, train.log)."""
    c = _typed(cfg)
    exp_dir = Path(c.exp_dir)
    _logging(exp_dir / "train.log")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    main = env_world().is_main  # under torchrun rank 0 alone holds the lock and writes
    with exp_lock(exp_dir, "recog-train") if main else nullcontext():  # before config.yaml
        if main:
            atomic_write_text(exp_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        result = pipeline.train(c, resolved)
    if main:
        print(f"best dev error rate: {result['best_dev_error_rate']:.2f} % "
              f"(checkpoint {exp_dir / 'best.pt'})")


@_verb
def decode(cfg: DictConfig) -> None:
    """recog-decode: decode splits with a checkpoint; write ref/hyp, scores and report."""
    _logging()
    c = _typed(cfg)
    results = pipeline.decode(c, _overridden_keys())
    print(pipeline.format_scores(results))
    print(f"results in {results['results_dir']}")  # the folder actually written
    for split, scored in results["splits"].items():  # one line per figure, for scripts
        for name, s in scored.items():
            print(f"{split} {name} {s['error_rate']:.2f} %")


@_verb
def lm(cfg: DictConfig) -> None:
    """recog-lm: train the token n-gram (and the word list and word n-gram) on the train
    split; with grids in decode.lm_weights / insertion_bonuses / word_lm_weights, tune
    them on dev and print the best as overrides on the last line."""
    import json

    from hydra.core.hydra_config import HydraConfig

    from recog.transcribe import write_tuned_setup

    _logging()
    c = _typed(cfg)
    for kind, path in pipeline.train_lm(c).items():
        print(f"{kind}: {path}")
    choice = HydraConfig.get().runtime.choices.get("decode")
    setup = Path(c.exp_dir) / f"decode_{choice}.json"  # beside best.pt, for transcription
    stored = (f"decoding set-up: {setup} (recog-transcribe {Path(c.exp_dir) / 'best.pt'} "
              f"FILE... --tuned {choice})")
    if c.decode.method != "beam" or not (c.decode.lm_weights or c.decode.insertion_bonuses
                                         or c.decode.word_lm_weights):
        write_tuned_setup(setup, c.decode, {})  # nothing to tune (isolated_word: no weights)
        print(stored)
        return
    rows = pipeline.tune(c)
    *options, _ = list(rows[0])
    print(format_tuning(rows, c.corpus.dev_split))
    write_tuned_setup(setup, c.decode, {**rows[0], "tuned_on": c.corpus.dev_split})
    print(stored)
    atomic_write_text(Path(c.decode.lm).with_name(f"{c.decode.results}.tune.json"),
                      json.dumps(rows, indent=1))
    print(" ".join(f"decode.{o}={rows[0][o]}" for o in options))


@guarded
def score(argv: list[str] | None = None) -> None:
    """recog-score REF HYP: sclite-compatible error rates of Kaldi text or sclite trn files,
    per speaker and in total, with confusions, the worst utterances and a bootstrap CI."""
    from recog.metrics import read_text, write_score
    from recog.metrics import score as score_texts
    from recog.tokens import fold_timit

    p = argparse.ArgumentParser(
        prog="recog-score", description=score.__doc__,
        epilog="recog-decode writes REF and HYP as exp/<recipe>/NAME/<results>/<split>/"
        f"{{ref,hyp}}.txt. {commandline.checkpoints_epilog()}")
    p.add_argument("ref", help="reference: Kaldi text ('<id> tok ...') or trn ('tok ... (<id>)')")
    p.add_argument("hyp", help="hypothesis, either format")
    unit = p.add_mutually_exclusive_group()
    unit.add_argument("--fold39", action="store_true",
                      help="map TIMIT phones (61 or 48 sets) to the 39 scoring classes first")
    unit.add_argument("--cer", action="store_true",
                      help="score characters of the text (spaces included), not tokens")
    p.add_argument("--utt2spk", type=Path, help="Kaldi utt2spk file (default: the id's "
                   "prefix before the first _ or -, sclite's spu_id)")
    p.add_argument("--out", type=Path, help="folder for report.md and scores.json "
                   "(default: the HYP file's folder)")
    p.add_argument("--json", type=Path, help="write scores.json here instead")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap interval")
    args = p.parse_args(argv)
    refs, hyps = read_text(args.ref), read_text(args.hyp)
    if not refs:
        raise DataError(args.ref, "no reference utterances: nothing to score")
    utt2spk = {k: v[0] for k, v in read_text(args.utt2spk).items()} if args.utt2spk else None
    unassigned = sorted(refs.keys() - utt2spk.keys()) if utt2spk is not None else []
    if unassigned:
        raise DataError(args.utt2spk, f"no speaker for {len(unassigned)} reference "
                        f"utterance(s), e.g. {unassigned[0]!r}")
    extra = sorted(hyps.keys() - refs.keys())
    if extra:
        raise DataError(args.hyp, f"{len(extra)} utterance(s) have no reference in "
                        f"{args.ref}, e.g. {extra[0]!r}: score the matching files")
    missing = sorted(refs.keys() - hyps.keys())
    if missing:
        print(f"note: {len(missing)} reference utterance(s) have no hypothesis in {args.hyp}"
              f" (e.g. {missing[0]!r}): scored as all deletions", file=sys.stderr)
    normalize = " ".join if args.cer else tuple  # --cer: the characters, one space a word
    if args.fold39:  # folded once, here, so that a token that is no phone names its file
        folded = []
        for path, texts in ((args.ref, refs), (args.hyp, hyps)):
            try:
                folded.append({k: fold_timit(v, to=39) for k, v in texts.items()})
            except KeyError as e:
                raise DataError(path, f"--fold39 folds TIMIT phones: {e.args[0]}") from None
        refs, hyps = folded
    s = score_texts(refs, hyps, normalize, utt2spk)
    write_score(s, args.out or Path(args.hyp).parent, f"{args.hyp} against {args.ref}",
                args.json, args.seed)
    print(format_speakers(s, seed=args.seed))


def _overridden_keys() -> list[str]:
    """The config keys the user set on the command line (``features`` for the group)."""
    from hydra.core.hydra_config import HydraConfig

    return [o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task]


@_verb
def finetune(cfg: DictConfig) -> None:
    """recog-finetune finetune.checkpoint=BEST.pt: fine-tune a trained model on the corpus
    (token-set transfer, frozen layers, per-part learning rates, warm-up) into exp_dir."""
    c = _typed(cfg)
    exp_dir = Path(c.exp_dir)
    _logging(exp_dir / "train.log")
    result = pipeline.finetune(c, c.finetune, _overridden_keys())
    if env_world().is_main:  # under torchrun rank 0 alone writes, as recog-train
        atomic_write_text(exp_dir / "config.yaml", OmegaConf.to_yaml(result["config"]))
        print(f"best dev error rate: {result['best_dev_error_rate']:.2f} % "
              f"(checkpoint {exp_dir / 'best.pt'})")


def _floats(text: str) -> list[float]:
    """A comma-separated list of numbers (an argparse type)."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: numbers separated by commas") from None


def _transcribe_parser(runtimes: tuple[str, ...]) -> argparse.ArgumentParser:
    """recog-transcribe's command line."""
    p = argparse.ArgumentParser(prog="recog-transcribe", description=transcribe.__doc__,
                                epilog=commandline.checkpoints_epilog())
    p.add_argument("checkpoint", type=Path, help="a best.pt written by recog-train/finetune")
    p.add_argument("files", nargs="*", type=Path,
                   help="audio or stroke files; a folder stands for the files in it")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scp", type=Path, help="Kaldi wav.scp: '<key> <path>' per line")
    src.add_argument("--list", type=Path, help="a file of paths, one per line")
    p.add_argument("--tuned", metavar="NAME|FILE", help="the decoding set-up recog-lm tuned "
                   "for this model (decode=NAME: decode_NAME.json beside the checkpoint, e.g. "
                   "beam_lm, beam_lexicon); the options below override its values")
    p.add_argument("--beam", type=at_least_one, help="beam width (default: 1, greedy; 16 "
                   "with an LM, a lexicon or --nbest)")
    p.add_argument("--nbest", type=at_least_one,
                   help="hypotheses per file in --json (beam search)")
    p.add_argument("--lm", help="token n-gram (ARPA, e.g. from recog-lm) for beam search")
    p.add_argument("--lm-weight", type=float, help="LM weight (alpha, default 0.5)")
    p.add_argument("--insertion-bonus", type=float, help="per token (beta, default 0)")
    p.add_argument("--lexicon", help="word list, one per line: only its words are spelt")
    p.add_argument("--word-lm", help="word n-gram (ARPA) over the lexicon's words")
    p.add_argument("--word-lm-weight", type=float, help="word LM weight (gamma, default 0.5)")
    p.add_argument("--warps", type=_floats, metavar="W,W,...",
                   help="speech: test-time VTLN, the posteriors averaged over the features at "
                   "these mel filterbank warp factors (e.g. 0.9,0.95,1,1.05,1.1)")
    p.add_argument("--fold39", action="store_true",
                   help="print TIMIT phones folded to the 39 scoring classes")
    p.add_argument("--batch-frames", type=at_least_one, default=30000,
                   help="padded frames per batch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runtime", choices=runtimes, default="torch",
                   help="what runs the network: torch, onnx (ONNX Runtime on the CPU, "
                   "over the checkpoint's export; pip install 'recog[onnx]') or pt2 (its "
                   "torch.export program, as recog-export writes it)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print a JSON list: per file its "
                     "tokens, text, scores, each token's frames and seconds, and the n-best")
    out.add_argument("--kaldi", action="store_true",
                     help="print Kaldi text as recog-decode's hyp.txt has it: '<key> <text>' "
                     "per file (key: the wav.scp key, else the file name without suffix)")
    return p


@guarded
def transcribe(argv: list[str] | None = None) -> None:
    """recog-transcribe CKPT FILE|FOLDER...: transcribe audio files (any format soundfile
    reads, any rate, stereo mixed down) or ink files (IAM-OnDB XML, JSON strokes, InkML; x
    right, y down, points in writing order) with a checkpoint; greedy, or beam search with a
    token LM, a lexicon and a word LM, or the set-up recog-lm tuned (--tuned NAME)."""
    import json

    from recog.transcribe import (
        RUNTIMES,
        TranscribeOptions,
        Transcriber,
        decode_options,
        kaldi_line,
        read_list,
        tuned_setup,
    )

    p = _transcribe_parser(RUNTIMES)
    args = p.parse_intermixed_args(argv)  # files may come after the options
    if args.scp or args.list:
        if args.files:
            p.error("give files, or --scp/--list, not both")
        listed = read_list(args.scp or args.list, scp=bool(args.scp))
        keys, files = [k for k, _ in listed], [f for _, f in listed]
    elif not args.files:
        p.error("give files, a folder, --scp or --list")
    setup = {}
    if args.tuned:
        tuned = Path(args.tuned)
        setup = tuned_setup(tuned if tuned.suffix == ".json" else
                            args.checkpoint.parent / f"decode_{args.tuned}.json")
    given = {k: getattr(args, k) for k in ("beam", "nbest", "lm", "lm_weight",
                                            "insertion_bonus", "lexicon", "word_lm",
                                            "word_lm_weight", "warps")}
    setup.update({k: v for k, v in given.items() if v is not None})
    opts = TranscribeOptions(decode_options(**setup), args.batch_frames, args.device,
                             args.fold39, args.runtime)
    transcriber = Transcriber.load(args.checkpoint, opts)
    if not (args.scp or args.list):
        files = transcriber.expand(args.files)
        keys = [f.stem for f in files]
    results = transcriber(files, keys)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=1))
    elif args.kaldi:
        for r in results:
            print(kaldi_line(r["key"], r["text"]))
    else:
        for r in results:
            print(f"{r['file']}\t{r['text']}")


@guarded
def export(argv: list[str] | None = None) -> None:
    """recog-export CKPT OUT_DIR: torch.export (model.pt2), TorchScript (model.ts) and ONNX
    (model.onnx) of the network, features in, log-probs out, with tokens.json and
    front_end.json."""
    from recog.export import FORMATS
    from recog.export import export as export_model

    p = argparse.ArgumentParser(prog="recog-export", description=export.__doc__,
                                epilog=commandline.checkpoints_epilog())
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--format", choices=[*FORMATS, "all"], default="all")
    args = p.parse_args(argv)
    formats = FORMATS if args.format == "all" else (args.format,)
    for path in export_model(args.checkpoint, args.out, formats):
        print(path)
