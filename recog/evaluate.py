"""Inference over a whole split: the model's log-probs batch by batch (``run_model``), and
the dev figures training selects on (``evaluate``: CTC loss and greedy error rate)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from recog.batching import Batch, CTCDataset, bucket_batches, iterate
from recog.decode.greedy import greedy_decode
from recog.metrics import error_count
from recog.models.ctc import CTCModel
from recog.tokens import Vocabulary


@torch.no_grad()
def run_model(model: CTCModel, dataset: CTCDataset, batch_frames: int, device: torch.device,
              warped: Sequence[CTCDataset] = ()
              ) -> Iterator[tuple[Batch, torch.Tensor, torch.Tensor]]:
    """Forward every utterance of ``dataset`` in length-bucketed batches (eval mode).
    ``warped``: the same utterances' features at other VTLN warps (as many frames each);
    the log-probs are then those of the mean posterior over ``dataset`` and ``warped``."""
    model.eval()
    for other in warped:
        if other.ids != dataset.ids or not np.array_equal(other.lengths, dataset.lengths):
            raise ValueError("the warped features are not of the same utterances and frames")
    plan = bucket_batches(dataset.lengths, batch_frames)
    runs = [iterate(d, plan) for d in warped]
    for batch in iterate(dataset, plan):
        log_probs, out_lens = model(batch.feats.to(device), batch.lengths.to(device))
        if runs:
            outs = [log_probs] + [model(b.feats.to(device), b.lengths.to(device))[0]
                                  for b in (next(r) for r in runs)]
            log_probs = mean_posterior(outs)
        yield batch, log_probs, out_lens


def mean_posterior(log_probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """log of the mean of the posteriors ``exp(log_probs)`` (same shapes): an ensemble's
    frame posteriors, still normalised over the tokens."""
    stacked = torch.stack(list(log_probs))
    return torch.logsumexp(stacked, 0) - math.log(len(stacked))


def evaluate(model: CTCModel, dataset: CTCDataset, vocab: Vocabulary,
             normalize: Callable[[Sequence[str]], Sequence[str]], batch_frames: int,
             device: torch.device) -> tuple[float, float, dict[str, list[str]]]:
    """Per-utterance CTC loss, greedy error rate after ``normalize``, and the hypotheses."""
    total_loss, hyps = 0.0, {}
    for batch, log_probs, out_lens in run_model(model, dataset, batch_frames, device):
        total_loss += F.ctc_loss(log_probs.transpose(0, 1), batch.targets.to(device), out_lens,
                                 batch.target_lengths.to(device), reduction="sum").item()
        for i, ids in zip(batch.indices, greedy_decode(log_probs, out_lens), strict=True):
            hyps[dataset.ids[i]] = vocab.decode(ids)
    errors = n = 0
    for i, t in enumerate(dataset.targets):  # plain edit distance: the fast path
        ref = normalize(vocab.decode(t))
        errors += error_count(ref, normalize(hyps[dataset.ids[i]]))
        n += len(ref)
    return total_loss / max(len(dataset), 1), 100.0 * errors / max(n, 1), hyps
