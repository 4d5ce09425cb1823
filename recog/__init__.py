"""recog: stacked BLSTM + CTC recognition of phones from speech and characters from ink."""
