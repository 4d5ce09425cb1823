"""The CTC model (normaliser, frame stacking, stacked BLSTM, linear, log-softmax) and its
checkpoints."""

from recog.models.checkpoint import load_checkpoint, save_checkpoint
from recog.models.ctc import CTCModel, ModelOptions

__all__ = ["CTCModel", "ModelOptions", "load_checkpoint", "save_checkpoint"]
