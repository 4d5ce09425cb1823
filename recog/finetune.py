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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from omegaconf import OmegaConf

from recog.data.utterance import DataError
from recog.features.cache import FeatureCache, feature_stats
from recog.models.checkpoint import load_checkpoint
from recog.models.ctc import CTCModel, ModelOptions
from recog.tokens import Vocabulary
from recog.train import OptimOptions, make_optimizer

if TYPE_CHECKING:  # recog.config holds FinetuneOptions in its schema
    from recog.config import Config, CorpusConfig

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


def token_kind(corpus: Mapping | CorpusConfig) -> str:
    """What a corpus config's tokens are: ``phones`` (TIMIT, or ``tokens: phones``),
    ``chars`` (``tokens: chars``, ink, FSDD) or ``list`` (a token list: its own kind, whose
    spellings say nothing more); ``corpus`` is a CorpusConfig or its dict form (a
    checkpoint's ``config["corpus"]``), absent keys taking CorpusConfig's defaults."""
    c = corpus if isinstance(corpus, Mapping) else vars(corpus)
    name = c.get("name", "timit")
    if name == "timit":
        return "phones"
    if name in ("iamondb", "fsdd") or c.get("modality") == "ink":
        return "chars"
    return str(c.get("tokens", "phones"))


def transfer_rule(option: str, old_kind: str, new_kind: str) -> str:
    """``by_name`` or ``fresh``: the option itself, or for ``auto`` by name unless one side is
    phones and the other characters (a token list may be either, so it transfers by name)."""
    if option not in TRANSFER_RULES:
        raise ValueError(f"finetune.transfer must be one of {', '.join(TRANSFER_RULES)}, "
                         f"not {option!r}")
    if option != "auto":
        return option
    return "fresh" if {old_kind, new_kind} == {"phones", "chars"} else "by_name"


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
    members = {"encoder": [p for part in ("frontend", "encoder") for layer in parts.get(part, [])
                           for p in layer],
               "output": [p for layer in parts["output"] for p in layer]}
    groups = [{"params": [p for p in params if p.requires_grad], "name": name,
               "lr": rates[name] if rates[name] is not None else optim.lr}
              for name, params in members.items()]
    optimizer = make_optimizer(model, optim, [g for g in groups if g["params"]])
    add_warmup(optimizer, opts.warmup_steps)
    return optimizer


def apply_checkpoint_setup(cfg: Config, payload: dict, checkpoint: str | Path,
                           overridden: Collection[str] = ()) -> Config:
    """``cfg`` with the checkpoint's front-end options and network shape. A feature option
    that the user set (``overridden`` holds dotted keys, or ``features`` for the whole group)
    to a value other than the checkpoint's is an error naming the key."""
    from recog import pipeline

    saved = (payload.get("config") or {}).get("features")
    front_end = pipeline.get_task(cfg).feature_key["front_end"]  # audio | pen
    if not saved or front_end not in saved:
        raise DataError(checkpoint, f"checkpoint holds no features.{front_end} options (it was "
                        "not trained on this modality, or by a recog-train that saved them)")
    current = getattr(cfg.features, front_end)
    wanted = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(type(current)),
                                                 saved[front_end]))
    for key, value in vars(wanted).items():
        full = f"features.{front_end}.{key}"
        mine = getattr(current, key)
        if mine != value and ("features" in overridden or full in overridden):
            raise DataError(checkpoint, f"{full}: the checkpoint was trained with {value!r}, "
                            f"the configuration asks for {mine!r}; a trained model keeps "
                            "its front end (drop the override)")
        if mine != value:
            log.info("%s=%r: the checkpoint's (the configuration has %r)", full, value, mine)
    features = replace(cfg.features, **{front_end: wanted})
    return replace(cfg, features=features, model=ModelOptions.from_dict(payload["model_options"]))


def finetune(cfg: Config, opts: FinetuneOptions, overridden: Collection[str] = ()) -> dict:
    """Fine-tune ``opts.checkpoint`` on the corpus of ``cfg`` into ``cfg.exp_dir``; returns
    what ``pipeline.train`` returns plus the token transfer."""
    from recog import pipeline

    if not opts.checkpoint:
        raise ValueError("finetune.checkpoint is required (the best.pt to start from)")
    base, old_vocab, payload = load_checkpoint(opts.checkpoint)
    normalize = cfg.model.normalize  # the one model option fine-tuning may change
    cfg = apply_checkpoint_setup(cfg, payload, opts.checkpoint, overridden)
    cfg = replace(cfg, model=replace(cfg.model, normalize=normalize))
    old_kind = token_kind((payload.get("config") or {}).get("corpus") or {})
    new_kind = token_kind(cfg.corpus)
    rule = transfer_rule(opts.transfer, old_kind, new_kind)
    transfer: dict[str, object] = {}

    def init(vocab: Vocabulary, train_cache: FeatureCache
             ) -> tuple[CTCModel, torch.optim.Optimizer]:
        if train_cache.dim != base.input_dim:
            raise DataError(opts.checkpoint, f"the checkpoint takes {base.input_dim}-dim "
                            f"features, the corpus gives {train_cache.dim}")
        model, moved = transfer_output(base, old_vocab, vocab, cfg.trainer.seed, rule)
        transfer.update(moved, rule=rule)
        if normalize != model.options.normalize:  # the data arrive normalised by group
            if opts.freeze_front_end or normalize == "global":
                raise ValueError(f"model.normalize={normalize}: fine-tuning may move a "
                                 f"model from global to per-{normalize} normalisation only "
                                 "with finetune.freeze_front_end=false")
            model.options = replace(model.options, normalize=normalize)
            model.set_normalization(torch.zeros(model.input_dim), torch.ones(model.input_dim))
        elif not opts.freeze_front_end and normalize == "global":
            mean, std = feature_stats(train_cache)
            model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
        frozen = freeze_layers(model, opts.freeze_layers)
        log.info("fine-tuning %s: output rows transferred %s (finetune.transfer=%s, %s "
                 "tokens to %s): %d tokens kept, %d new %s, %d dropped %s; %d tensors "
                 "frozen", opts.checkpoint, rule, opts.transfer, old_kind, new_kind,
                 len(moved["kept"]), len(moved["new"]), moved["new"], len(moved["dropped"]),
                 moved["dropped"], len(frozen))
        return model, build_optimizer(model, cfg.optim, opts)

    config = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    config["finetune"] = vars(opts).copy()
    result = pipeline.train(cfg, config, init)
    result["transfer"] = transfer
    result["config"] = config
    return result
