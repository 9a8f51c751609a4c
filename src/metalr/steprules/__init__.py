"""Registry of inner-loop step-size rules: adding a rule is one module plus one line here.

Each module declares its label, whether its rates are learned and its settings (defaults, sources,
tuning ranges) in a literal ``SPEC`` (``metalr.plugins``); the config's ``rules.*`` defaults and schema,
the choices ledger, the benchmark and the tuning search space are derived from it. Importing this
package does not import torch: ``make_rule`` imports the rule's module when a job needs it.
"""
from __future__ import annotations

from typing import Any, Mapping

from metalr.plugins import Registry

RULES = Registry("step-size rule", {
    "fixed": "metalr.steprules.fixed:FixedRate",
    "mlplr": "metalr.steprules.mlplr:MLPLR",
    "meta-sgd": "metalr.steprules.metasgd:MetaSGD",
    "lslr": "metalr.steprules.lslr:LSLR",
    "hypergradient": "metalr.steprules.hypergradient:Hypergradient",
    "metaoptimize": "metalr.steprules.metaoptimize:MetaOptimize",
    "alfa": "metalr.steprules.alfa:ALFA",
}, required_flags=("learned",))


def make_rule(name: str, rules_config: Mapping[str, Any]):
    """The rule ``name`` (or its untuned baseline ``<name>-untuned``) with its settings: ``rules_config[name]``
    over the SPEC's defaults.

    Raises KeyError for an unknown rule (naming the valid ones)."""
    from metalr.config import base_rule

    plugin = RULES[base_rule(name)]
    return plugin.load()({**plugin.defaults(), **rules_config.get(base_rule(name), {})})
