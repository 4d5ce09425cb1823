"""The CTC model (normaliser, optional ConvLSTM front end, frame stacking, stacked (B)LSTM of a
chosen cell, linear, log-softmax) and its checkpoints."""

from recog.models.cells import PeepholeOptions, StackedRecurrent
from recog.models.checkpoint import load_checkpoint, save_checkpoint
from recog.models.convlstm import ConvLSTMFrontEnd, ConvLSTMOptions
from recog.models.ctc import CELLS, CTCModel, ModelOptions

__all__ = ["CELLS", "CTCModel", "ConvLSTMFrontEnd", "ConvLSTMOptions", "ModelOptions",
           "PeepholeOptions", "StackedRecurrent", "load_checkpoint", "save_checkpoint"]
