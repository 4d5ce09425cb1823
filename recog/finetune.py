"""Fine-tuning: start from a trained checkpoint on a new corpus, even with another token set.

The output layer is transferred token by token (``finetune.transfer``: ``by_name``, tokens
spelled alike keep their rows, new tokens get fresh rows, tokens absent from the new set are
dropped; ``fresh``, every row but the blank's anew; ``auto``, by name unless the checkpoint's
tokens and the corpus's are of different kinds, phones and characters); the first ``freeze_layers``
recurrent layers and, with ``freeze_front_end``, the input normalisation can be kept fixed;
the encoder (a ConvLSTM front end included) and the output layer have their own learning
rates and a linear warm-up. Layers and parts come from the model (``CTCModel.parts``), for
every cell alike. The front
end (feature options) and the network's shape come from the checkpoint. The rest is
``recog-train``: resume, early stopping, best.pt/last.pt, results.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from recog.models.ctc import CTCModel
from recog.tokens import Vocabulary
from recog.train import OptimOptions, make_optimizer

log = logging.getLogger("recog.finetune")


@dataclass
class FinetuneOptions:
    """The ``finetune`` options of ``recog-finetune``."""

    checkpoint: str = ""  # the best.pt to start from
    freeze_layers: int = 0  # the first k recurrent layers (both directions) are not trained
    freeze_front_end: bool = True  # keep the checkpoint's input normalisation (else re-estimate)
    encoder_lr: float | None = None  # default: optim.lr
    output_lr: float | None = None  # default: optim.lr
    warmup_steps: int = 0  # learning rates rise linearly over this many steps
    transfer: str = "auto"  # output rows: auto | by_name | fresh (see transfer_rule)


TRANSFER_RULES = ("auto", "by_name", "fresh")


def token_kind(corpus: Mapping | object) -> str:
    """What a corpus config's tokens are: ``phones`` (TIMIT, or ``tokens: phones``),
    ``chars`` (``tokens: chars``, ink, FSDD's default), ``words`` (``tokens: words``) or
    ``list`` (a token list: its own kind, whose spellings say nothing more); ``corpus`` is a
    CorpusConfig or its dict form (a checkpoint's ``config["corpus"]``), absent keys taking
    CorpusConfig's defaults."""
    c = corpus if isinstance(corpus, Mapping) else vars(corpus)
    name = c.get("name", "timit")
    if name == "timit":
        return "phones"
    if name == "iamondb" or c.get("modality") == "ink":
        return "chars"
    if name == "fsdd":
        return "words" if c.get("tokens") == "words" else "chars"
    return str(c.get("tokens", "phones"))


def transfer_rule(option: str, old_kind: str, new_kind: str) -> str:
    """``by_name`` or ``fresh``: the option itself, or for ``auto`` by name unless the two
    sides are of different kinds among phones, characters and words (a token list may be
    any, so it transfers by name)."""
    if option not in TRANSFER_RULES:
        raise ValueError(f"finetune.transfer must be one of {', '.join(TRANSFER_RULES)}, "
                         f"not {option!r}")
    if option != "auto":
        return option
    kinds = {old_kind, new_kind}
    return "fresh" if len(kinds) == 2 and "list" not in kinds else "by_name"


def transfer_output(model: CTCModel, old: Vocabulary, new: Vocabulary, seed: int = 0,
                    rule: str = "by_name") -> tuple[CTCModel, dict[str, list[str]]]:
    """A copy of ``model`` whose output layer is over ``new``: with ``by_name`` rows of tokens
    in both sets (blank included) are copied and new tokens get freshly initialised rows;
    with ``fresh`` only the blank's row is copied. Also returns the kept, new and dropped
    tokens."""
    if rule not in ("by_name", "fresh"):
        raise ValueError(f"transfer rule must be by_name or fresh, not {rule!r}")
    torch.manual_seed(seed)
    old_index = old.index if rule == "by_name" else {new.tokens[0]: old.index[old.tokens[0]]}
    out = model.resize_output([old_index.get(t) for t in new.tokens])
    kept = [t for t in new.tokens if t in old_index]
    kept_set = set(kept) if rule == "fresh" else set(new.tokens)
    return out, {"kept": kept, "new": [t for t in new.tokens if t not in old_index],
                 "dropped": [t for t in old.tokens if t not in kept_set]}


def freeze_layers(model: CTCModel, k: int) -> list[torch.nn.Parameter]:
    """Stop gradients into the first ``k`` recurrent layers (both directions; the front end
    before them keeps training); returns the frozen parameters."""
    layers = model.parts()["encoder"]
    if not 0 <= k <= len(layers):
        raise ValueError(f"finetune.freeze_layers must be 0..{len(layers)}, not {k}")
    frozen = [p for layer in layers[:k] for p in layer]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def add_warmup(optimizer: torch.optim.Optimizer, steps: int) -> None:
    """Scale each group's learning rate by min(1, step/steps) during the first ``steps``
    steps. The scaled rate lives only inside ``step()``, so schedulers that change the rate
    between steps and the logged rate are unaffected; the count is in the state dict."""
    if steps <= 0:
        return

    def before(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        for g in opt.param_groups:
            g["warmup_step"] = g.get("warmup_step", 0) + 1
            g["lr_after_warmup"] = g["lr"]
            g["lr"] = g["lr"] * min(1.0, g["warmup_step"] / steps)

    def after(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        for g in opt.param_groups:
            g["lr"] = g.pop("lr_after_warmup")

    optimizer.register_step_pre_hook(before)
    optimizer.register_step_post_hook(after)


def build_optimizer(model: CTCModel, optim: OptimOptions, opts: FinetuneOptions
                    ) -> torch.optim.Optimizer:
    """The configured optimiser with two groups, ``encoder`` (front end and recurrent layers,
    at ``encoder_lr``) and ``output`` (at ``output_lr``), frozen parameters left out, and
    the warm-up."""
    parts = model.parts()
    rates = {"encoder": opts.encoder_lr, "output": opts.output_lr}
    for name, rate in rates.items():  # 0 holds a part still; below 0 climbs the loss
        if rate is not None and not 0 <= rate < math.inf:
            raise ValueError(f"finetune.{name}_lr must be a number >= 0, not {rate}")
    if opts.warmup_steps < 0:
        raise ValueError(f"finetune.warmup_steps must be >= 0, not {opts.warmup_steps}")
    members = {"encoder": [p for part in ("frontend", "encoder") for layer in parts.get(part, [])
                           for p in layer],
               "output": [p for layer in parts["output"] for p in layer]}
    groups = [{"params": [p for p in params if p.requires_grad], "name": name,
               "lr": rates[name] if rates[name] is not None else optim.lr}
              for name, params in members.items()]
    optimizer = make_optimizer(model, optim, [g for g in groups if g["params"]])
    add_warmup(optimizer, opts.warmup_steps)
    return optimizer
