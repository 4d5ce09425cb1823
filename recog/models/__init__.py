"""The CTC model (normaliser, optional ConvLSTM front end, frame stacking, stacked (B)LSTM of a
chosen cell, linear, log-softmax) and its checkpoints. Every cell's stack and the front end
implement one protocol (recog.models.encoder.Encoder)."""

from recog.models.cells import PeepholeOptions, StackedRecurrent
from recog.models.checkpoint import load_checkpoint, save_checkpoint
from recog.models.convlstm import ConvLSTMFrontEnd, ConvLSTMOptions
from recog.models.ctc import CELLS, CTCModel, ModelOptions
from recog.models.encoder import Encoder
from recog.models.padded_lstm import LSTMStack

__all__ = ["CELLS", "CTCModel", "ConvLSTMFrontEnd", "ConvLSTMOptions", "Encoder", "LSTMStack",
           "ModelOptions", "PeepholeOptions", "StackedRecurrent", "load_checkpoint",
           "save_checkpoint"]
