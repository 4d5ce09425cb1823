"""Stage 4 and 5: decode each split with a checkpoint, score it and write the results."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from pathlib import Path

import torch

from recog import distributed
from recog.atomic import atomic_write_text
from recog.batching import CTCDataset
from recog.config import Config
from recog.data.utterance import DataError, Rejections, Utterance
from recog.decode.decoder import Decoder, check_warps, make_decoder
from recog.evaluate import run_model
from recog.lockfile import exp_lock
from recog.metrics import Score, score, write_score, write_text, write_trn
from recog.models.checkpoint import load_checkpoint
from recog.models.ctc import CTCModel
from recog.report import pictures, report
from recog.stages.corpora import get_task
from recog.stages.features import dataset
from recog.stages.finetune import apply_checkpoint_setup
from recog.tasks import Task
from recog.threads import set_threads
from recog.tokens import Vocabulary

log = logging.getLogger("recog")


def load_model(cfg: Config, overridden: Collection[str] = ()
                ) -> tuple[Config, CTCModel, Vocabulary, dict, Path, torch.device]:
    """The checkpoint's model, and ``cfg`` with the checkpoint's front end and network
    options: features computed otherwise would not be what the model was trained on. A
    feature key the user set (``overridden``) to another value is an error naming it."""
    exp_dir = Path(cfg.exp_dir)
    ckpt = Path(cfg.decode.checkpoint)
    ckpt = ckpt if ckpt.is_file() else exp_dir / cfg.decode.checkpoint
    device = distributed.available_device(cfg.trainer.device, "trainer.device")
    model, vocab, payload = load_checkpoint(ckpt, device)
    if "front_end" in payload or (payload.get("config") or {}).get("features"):  # else bare
        cfg = apply_checkpoint_setup(cfg, payload, ckpt, overridden)
    else:
        log.warning("%s holds no front-end options: features as configured", ckpt)
    set_threads(cfg.trainer.num_threads)
    return cfg, model.to(device), vocab, payload, ckpt, device


def decode(cfg: Config, overridden: Collection[str] = ()) -> dict:
    """Decode each split with the experiment's checkpoint and ``decode.method``; write
    ref/hyp (Kaldi text and sclite trn, as scored), scores.json and report.md into
    ``exp_dir/<decode.results>``. Features are computed with the checkpoint's front end
    (``overridden``: the dotted keys the user set; one that contradicts it is an error)."""
    with exp_lock(cfg.exp_dir, "recog-decode"):
        return _decode(cfg, overridden)


def _decode(cfg: Config, overridden: Collection[str] = ()) -> dict:
    exp_dir = Path(cfg.exp_dir)
    cfg, model, vocab, payload, ckpt, device = load_model(cfg, overridden)
    decoder = make_decoder(cfg.decode, vocab.tokens)
    results_dir = exp_dir / cfg.decode.results
    task = get_task(cfg)
    rejections = Rejections(cfg.data.skip_bad)
    results: dict = {"checkpoint": str(ckpt), "epoch": payload.get("epoch"),
                     "metrics": list(task.metrics), "selection": task.selection,
                     "results_dir": str(results_dir), "splits": {}}
    for split in cfg.decode_splits:
        ds, warped, utts = decode_data(cfg, split, vocab, model, rejections)
        hyps = hypotheses(model, ds, utts, decoder, vocab, cfg.decode.batch_frames, device,
                          rejections, warped)
        scored, scores = score_split(task, utts, hyps, results_dir / split,
                                     f"{cfg.recipe} / {cfg.name}: {split}")
        results["splits"][split] = scored
        if split == cfg.decode_splits[-1]:  # the last test split gets the pictures
            results["pictures"] = pictures(cfg, model, vocab, task, ds, utts, hyps,
                                           scores[task.selection], results_dir, device)
    skipped = [e.as_dict() for e in rejections.items]
    results["skipped"] = skipped
    atomic_write_text(results_dir / "scores.json", json.dumps(results, indent=1))
    atomic_write_text(results_dir / "report.md", report(cfg, results, exp_dir))
    return results


def decode_data(cfg: Config, split: str, vocab: Vocabulary, model: CTCModel,
                rejections: Rejections | None = None
                ) -> tuple[CTCDataset, list[CTCDataset], list[Utterance]]:
    """A split as decoding reads it: its dataset at the first of ``decode.warps`` (the
    plain features when there are none), the datasets at the other warps (test-time VTLN:
    the posteriors are averaged over all) and its utterances."""
    warps = check_warps(cfg.decode.warps, get_task(cfg).modality)
    kw = dict(max_frames=cfg.decode.batch_frames, normalize=model.options.normalize)
    sets = [dataset(cfg, split, vocab, rejections=rejections if k == 0 else Rejections(),
                    warp=w, **kw) for k, w in enumerate(warps or [1.0])]
    return sets[0][0], [d for d, _ in sets[1:]], sets[0][1]


def hypotheses(model: CTCModel, ds: CTCDataset, utts: list[Utterance], decoder: Decoder,
               vocab: Vocabulary, batch_frames: int, device: torch.device,
               rejections: Rejections, warped: Sequence[CTCDataset] = ()
               ) -> dict[str, list[str]]:
    """The decoded tokens of every utterance of ``ds`` (the posteriors averaged with
    ``warped``'s); one whose output is not finite is a rejection (an error unless
    ``data.skip_bad``) and gets no hypothesis."""
    hyps: dict[str, list[str]] = {}
    for batch, log_probs, out_lens in run_model(model, ds, batch_frames, device, warped):
        inside = torch.arange(log_probs.shape[1], device=device)[None] < out_lens[:, None]
        finite = (torch.isfinite(log_probs).all(dim=2) | ~inside).all(dim=1)
        for k in (~finite).nonzero().flatten().tolist():
            i = batch.indices[k]
            rejections.add(DataError(utts[i].source, f"utterance {utts[i].id}: the "
                                     "model's output is not finite (NaN or inf)"))
        keep = finite.nonzero().flatten()
        if len(keep):
            decoded = decoder(log_probs[keep], out_lens[keep])
            for k, ids in zip(keep.tolist(), decoded, strict=True):
                hyps[ds.ids[batch.indices[k]]] = vocab.decode(ids)
    return hyps


def score_split(task: Task, utts: list[Utterance], hyps: dict[str, list[str]], out: Path,
                title: str) -> tuple[dict, dict[str, Score]]:
    """Score the hypotheses of a split with each of the task's metrics, into ``out``: per
    metric its report and scores; ref/hyp as Kaldi text and sclite trn (as the selection
    metric scores them) and the hypotheses' tokens. Returns the table (per metric, the
    totals and the number of speakers) and the Scores."""
    refs = {u.id: list(u.tokens) for u in utts if u.id in hyps}
    utt2spk = {u.id: u.speaker for u in utts if u.id in hyps}
    scored, scores = {}, {}
    for name, normalize in task.metrics.items():
        s = scores[name] = score(refs, hyps, normalize, utt2spk)
        write_score(s, out / name, f"{title} {name}")
        scored[name] = {k: v for k, v in s.as_dict().items() if k != "per_speaker"}
        scored[name]["speakers"] = len(s.per_speaker)
    chosen = task.metrics[task.selection]
    as_text = {"ref": {k: task.to_text(chosen(v)) for k, v in refs.items()},
               "hyp": {k: task.to_text(chosen(v)) for k, v in hyps.items()}}
    for side, entries in as_text.items():
        write_text(out / f"{side}.txt", {k: v.split(" ") if v else [] for k, v in
                                         entries.items()})
        write_trn(out / f"{side}.trn", {k: [v] for k, v in entries.items()})
    write_text(out / "hyp.tokens.txt", hyps)
    return scored, scores
