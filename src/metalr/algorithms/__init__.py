"""Registry of meta-learning algorithms: adding one is one module plus one line here.

Each module declares its label, its flags (``trains_rule_meta``, ``batches_training``,
``differentiates_inner_loop``) and its settings in
a literal ``SPEC`` (``metalr.plugins``); settings are read from ``algorithms.<name>`` in the config (their
defaults from the SPEC) and passed to the registered constructor. Importing this
package does not import torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from metalr.plugins import Registry

if TYPE_CHECKING:
    from metalr.models.base import Backbone

ALGORITHMS = Registry("algorithm", {
    "maml": "metalr.algorithms.maml:MAML",
    "fomaml": "metalr.algorithms.fomaml:FOMAML",
    "anil": "metalr.algorithms.anil:ANIL",
    "reptile": "metalr.algorithms.reptile:Reptile",
    "imaml": "metalr.algorithms.imaml:IMAML",
}, required_flags=("trains_rule_meta", "batches_training", "differentiates_inner_loop"))


def get_algorithm(name: str, settings: Mapping[str, Any], backbone: "Backbone"):
    """The registered algorithm adapting ``backbone`` (a ``metalr.models.base.Backbone``, e.g.
    ``metalr.models.get_backbone(cfg["model"]["name"])``), with ``settings[name]`` (the config's
    ``algorithms`` block) over its defaults.

    Raises KeyError for an unknown algorithm (naming the valid ones)."""
    plugin = ALGORITHMS[name]
    return plugin.load()(backbone=backbone, **{**plugin.defaults(), **settings.get(name, {})})
