"""First-order MAML: MAML with the inner gradients treated as constants."""
from __future__ import annotations

import functools

from metalr.algorithms.maml import MAML

SPEC = {
    "label": "FOMAML",
    "trains_rule_meta": True,  # the first-order meta-gradient still reaches the rates of the last step
    "batches_training": True,
    "differentiates_inner_loop": False,  # the inner gradients are detached
}

FOMAML = functools.partial(MAML, name="fomaml", first_order=True)
