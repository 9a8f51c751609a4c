"""Registry of inner-loop step-size rules: adding a rule is one module plus one line here."""
from __future__ import annotations

from typing import Any, Mapping

from metalr.steprules.alfa import ALFA
from metalr.steprules.base import StepRule
from metalr.steprules.fixed import FixedRate
from metalr.steprules.hypergradient import Hypergradient
from metalr.steprules.lslr import LSLR
from metalr.steprules.metaoptimize import MetaOptimize
from metalr.steprules.metasgd import MetaSGD
from metalr.steprules.mlplr import MLPLR

RULES: dict[str, type] = {
    FixedRate.name: FixedRate,
    MLPLR.name: MLPLR,
    MetaSGD.name: MetaSGD,
    LSLR.name: LSLR,
    Hypergradient.name: Hypergradient,
    MetaOptimize.name: MetaOptimize,
    ALFA.name: ALFA,
}


def make_rule(name: str, rules_config: Mapping[str, Any]) -> StepRule:
    if name not in RULES:
        raise KeyError(f"unknown step-size rule {name!r}; valid: {sorted(RULES)}")
    return RULES[name](rules_config[name])
