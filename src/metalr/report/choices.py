"""Choices ledger: every config value an experiment used, with where it comes from.

The source of a value is its tag in the config files' comments (``lr: 0.4  # [MAML] ...``), recorded by
the config stage beside the resolved config (metalr.provenance), with the layer that set it. Tags map to
one of three sources: the paper, a cited reference, or our choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from metalr.provenance import leaves

PAPER = "paper"
TUNED = "tuned on meta-val"
OURS = "our choice"
OUR_TAGS = {"ours": "", "quick": "quick-run budget", "cpu": "CPU budget"}
CITED = {"MAML": "Finn et al. 2017"}  # tags that are short names of a reference
# sections whose children are named after datasets / algorithms / rules: only the ones the runs use count
ENTITY_SECTIONS = {"data": "datasets", "algorithms": "algorithms", "rules": "rules"}


def _registries() -> dict[str, set[str]]:
    from metalr.algorithms import ALGORITHMS
    from metalr.data.registry import DATASETS
    from metalr.steprules import RULES

    return {"datasets": set(DATASETS), "algorithms": set(ALGORITHMS), "rules": set(RULES)}


@dataclass(frozen=True)
class Choice:
    key: str
    value: str
    tag: str  # '' when neither the key nor a parent is tagged
    source: str
    set_in: str  # the layer that sets the value: 'defaults', the plug-in module declaring it, or 'layer k'


def source_of(tag: str) -> str:
    """'paper', 'cited reference (<name>)' or 'our choice (<why>)'; 'untagged' for ''."""
    if not tag:
        return "untagged"
    if tag == "paper":
        return PAPER
    if tag in OUR_TAGS:
        return f"{OURS} ({OUR_TAGS[tag]})" if OUR_TAGS[tag] else OURS
    return f"cited reference ({tag}, {CITED[tag]})" if tag in CITED else f"cited reference ({tag})"


def format_value(value: Any) -> str:
    """YAML flow style, as one would write it in the config."""
    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]


def set_in(source: Mapping[str, Any]) -> str:
    """Which layer set a value: the defaults (config/config.yaml, or the plug-in module that declares it)
    or the k-th config file over them."""
    if source["layer"]:
        return f"layer {source['layer']}"
    return source.get("declared_in", "defaults")


def ledger(cfg: Mapping[str, Any], sources: Mapping[str, Mapping[str, Any]],
           used: Mapping[str, set[str]] | None = None, tuned: Mapping[str, str] | None = None) -> list[Choice]:
    """One Choice per leaf of the resolved config ``cfg``, by key (the order of the resolved config file, whatever
    order the config files were merged in), with its source from ``sources``
    (metalr.provenance.sources). ``used`` maps 'datasets' / 'algorithms' / 'rules' to the names the
    experiment ran; the settings of other datasets, algorithms and rules (data.<dataset>,
    algorithms.<name>, rules.<name>) are left out (all are kept when ``used`` is None). Raises ValueError
    when ``sources`` lacks a key of ``cfg`` (they were not written together). A key in ``tuned``
    (metalr.tune.tuned_keys: its range and budget in words) is marked as tuned on meta-validation: its
    value is then the untuned baseline's, and its tag's source is given beside."""
    known = _registries() if used is not None else {}
    out = []
    for key, value in sorted(leaves(cfg), key=lambda leaf: leaf[0]):
        parts = key.split(".")
        kind = ENTITY_SECTIONS.get(parts[0])
        if used is not None and kind and len(parts) > 2 and parts[1] in known[kind] \
                and parts[1] not in used.get(kind, set()):
            continue
        if key not in sources:
            raise ValueError(f"the config sources have no entry for {key}: they belong to another config; "
                             "rewrite both with `metalr config`")
        tag = sources[key]["tag"]
        source = source_of(tag)
        if key in (tuned or {}):
            source = f"{TUNED}: {tuned[key]} (the value is the untuned baseline's: {source})"
        out.append(Choice(key, format_value(value), tag, source, set_in(sources[key])))
    return out


def counts(choices: list[Choice]) -> dict[str, int]:
    return {"all": len(choices),
            "paper": sum(c.source == PAPER for c in choices),
            "tuned": sum(c.source.startswith(TUNED) for c in choices),
            "cited": sum(c.source.startswith("cited") for c in choices),
            "ours": sum(c.source.startswith(OURS) for c in choices),
            "untagged": sum(not c.tag for c in choices)}
