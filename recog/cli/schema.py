"""The Hydra side of the configuration: the library's typed ``Config`` registered as the
schema of conf/config.yaml, and the check that every key given is one it knows."""

from __future__ import annotations

import difflib

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from recog.config import Config
from recog.data.utterance import ConfigError


def register() -> None:
    """Make the schema available to conf/config.yaml's defaults list as ``schema``."""
    ConfigStore.instance().store(name="schema", node=Config)


def unknown_keys(cfg: DictConfig) -> list[str]:
    """The dotted keys of ``cfg`` that the schema does not have. Hydra refuses a misspelt
    ``key=value`` itself, but ``+key=value`` (and a YAML overlay outside the schema's
    groups) adds the key, which the typed config then silently drops."""
    schema = OmegaConf.structured(Config)

    def walk(node: DictConfig, ref: DictConfig, prefix: str) -> list[str]:
        out = []
        known_keys = set(ref.keys())  # `in` would say no for a MISSING value
        for key in node.keys():
            full = f"{prefix}{key}"
            if key not in known_keys:
                out.append(full)
            else:
                child, known = node._get_node(key), ref._get_node(key)
                if (isinstance(child, DictConfig) and isinstance(known, DictConfig)
                        and OmegaConf.get_type(known) is not dict):
                    out += walk(child, known, f"{full}.")
        return out

    return walk(cfg, schema, "")


def check_keys(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first key the schema does not know, with the nearest
    known key of its group."""
    bad = unknown_keys(cfg)
    if not bad:
        return
    key = bad[0]
    parent, _, leaf = key.rpartition(".")
    group = OmegaConf.select(OmegaConf.structured(Config), parent) if parent else None
    known = list(group.keys() if group is not None else Config.__dataclass_fields__)
    near = difflib.get_close_matches(leaf, known, n=1)
    hint = (f"did you mean {parent + '.' if parent else ''}{near[0]}?" if near else
            f"{parent or 'the top level'} has: {', '.join(known)}")
    if key == "experiment":
        hint = ("no experiment group was found (+experiment=NAME looks in the recipes; "
                "recog-<verb> --help lists them)")
    more = f" (and {len(bad) - 1} more: {', '.join(bad[1:])})" if len(bad) > 1 else ""
    raise ConfigError(key, f"not a key of the configuration{more}; {hint}")
