"""Inference over a whole split: the model's log-probs batch by batch (``run_model``), and
the dev figures training selects on (``evaluate``: CTC loss and greedy error rate)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from recog.batching import Batch, CTCDataset, bucket_batches, iterate
from recog.decode.greedy import greedy_decode
from recog.metrics import error_count
from recog.models.ctc import CTCModel
from recog.tokens import Vocabulary


@torch.no_grad()
def run_model(model: CTCModel, dataset: CTCDataset, batch_frames: int, device: torch.device
              ) -> Iterator[tuple[Batch, torch.Tensor, torch.Tensor]]:
    """Forward every utterance of ``dataset`` in length-bucketed batches (eval mode)."""
    model.eval()
    for batch in iterate(dataset, bucket_batches(dataset.lengths, batch_frames)):
        log_probs, out_lens = model(batch.feats.to(device), batch.lengths.to(device))
        yield batch, log_probs, out_lens


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
