"""MLPLR's step size against the paper's Eq. 4-5, on hand-made logits and as a property."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from metalr.steprules import RULES, make_rule
from metalr.steprules.base import SupportState, inner_update
from metalr.steprules.mlplr import DIVERGENCES, kl_terms, personalised_rate

SETTINGS = {"mlplr": {"lr_max": 1.0, "lr_min": 0.05, "grad_through_lr": False, "divergence": "kl_label_pred"}}


def support(logits: torch.Tensor, labels: torch.Tensor) -> SupportState:
    return SupportState(logits=logits, labels=labels, loss=F.cross_entropy(logits, labels))


def test_low_divergence_branch_gives_lr_max_minus_kl(float64):
    # Two examples, 2 classes: p(correct) = 0.9 and 0.8, so KL(label||pred) = -(ln 0.9 + ln 0.8)/2.
    logits = torch.tensor([[math.log(0.9), math.log(0.1)], [math.log(0.2), math.log(0.8)]])
    labels = torch.tensor([0, 1])
    kl = -(math.log(0.9) + math.log(0.8)) / 2
    rule = make_rule("mlplr", SETTINGS)
    params = {"w": torch.tensor([1.0, -2.0])}
    grads = {"w": torch.tensor([0.5, 0.25])}
    new, rate, _ = inner_update(rule, {}, params, grads, 0, support(logits, labels), {})
    assert rate.item() == pytest.approx(1.0 - kl, abs=1e-12)
    torch.testing.assert_close(new["w"], params["w"] - (1.0 - kl) * grads["w"])


def test_high_divergence_branch_gives_lr_min(float64):
    logits = torch.tensor([[math.log(0.1), math.log(0.9)]])  # KL = -ln 0.1 = 2.30 > lr_max
    rule = make_rule("mlplr", SETTINGS)
    _, rate, _ = inner_update(rule, {}, {"w": torch.zeros(1)}, {"w": torch.ones(1)}, 0, support(logits, torch.tensor([0])), {})
    assert rate.item() == pytest.approx(0.05)


def test_boundary_kl_equal_to_lr_max_uses_first_branch(float64):
    assert personalised_rate(torch.tensor(1.0), 1.0, 0.05).item() == 0.0


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=2, max_value=8), st.integers(min_value=1, max_value=6), st.integers(0, 2**31 - 1),
       st.floats(min_value=0.1, max_value=5.0), st.floats(min_value=0.0, max_value=1.0))
def test_rate_follows_eq5_and_kl_equals_cross_entropy(ways, per_class, seed, lr_max, min_fraction):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(ways * per_class, ways, generator=gen, dtype=torch.float64) * 3
    labels = torch.arange(ways).repeat_interleave(per_class)
    kl = DIVERGENCES["kl_label_pred"](kl_terms(logits, labels))
    target = F.one_hot(labels, ways).to(logits.dtype)
    torch.testing.assert_close(kl, F.kl_div(F.log_softmax(logits, -1), target, reduction="batchmean"))
    # For one-hot labels KL(label || prediction) is the cross-entropy (the finite reading of Eq. 4).
    torch.testing.assert_close(kl, F.cross_entropy(logits, labels))
    lr_min = lr_max * min_fraction
    rate = personalised_rate(kl, lr_max, lr_min).item()
    expected = lr_max - kl.item() if kl.item() <= lr_max else lr_min
    assert rate == pytest.approx(expected, abs=1e-12)
    assert rate >= 0.0 and rate <= lr_max


def test_both_readings_of_eq4_against_hand_computations(float64):
    """Two 3-way examples: p(label) = 0.5 and 0.25. KL(label || prediction) averaged over examples is
    -(ln 0.5 + ln 0.25) / 2 = 1.0397 (kl_label_pred); F.kl_div's default 'mean' also divides by the
    3 classes: 0.3466 (kl_div_mean). With lr_max 1.0 the first reading takes lr_min, the second
    lr_max - 0.3466."""
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.25, 0.25]])
    logits, labels = probs.log(), torch.tensor([0, 1])
    by_example = -(math.log(0.5) + math.log(0.25)) / 2
    expected = {"kl_label_pred": by_example, "kl_div_mean": by_example / 3}
    target = F.one_hot(labels, 3).to(logits.dtype)
    library = {"kl_label_pred": F.kl_div(F.log_softmax(logits, -1), target, reduction="batchmean"),
               "kl_div_mean": F.kl_div(F.log_softmax(logits, -1), target)}
    rates = {"kl_label_pred": 0.05, "kl_div_mean": 1.0 - by_example / 3}
    for reading, value in expected.items():
        assert DIVERGENCES[reading](kl_terms(logits, labels)).item() == pytest.approx(value, abs=1e-12)
        assert library[reading].item() == pytest.approx(value, abs=1e-12)
        rule = make_rule("mlplr", {"mlplr": {**SETTINGS["mlplr"], "divergence": reading}})
        _, rate, _ = inner_update(rule, {}, {"w": torch.zeros(1)}, {"w": torch.ones(1)}, 0, support(logits, labels), {})
        assert rate.item() == pytest.approx(rates[reading], abs=1e-12), reading


def test_rate_is_constant_for_the_meta_gradient_by_default(float64):
    logits = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1])
    grads = {"w": torch.ones(1, dtype=torch.float64)}
    for through, expect_grad in ((False, False), (True, True)):
        rule = make_rule("mlplr", {"mlplr": {**SETTINGS["mlplr"], "lr_max": 5.0, "grad_through_lr": through}})
        _, rate, _ = inner_update(rule, {}, {"w": torch.zeros(1, dtype=torch.float64)}, grads, 0, support(logits, labels), {})
        assert rate.requires_grad is expect_grad


def test_lr_min_above_lr_max_is_refused():
    with pytest.raises(ValueError, match="lr_min"):
        make_rule("mlplr", {"mlplr": {**SETTINGS["mlplr"], "lr_min": 2.0}})


def test_fixed_rule_uses_its_rate_every_step(float64):
    rule = make_rule("fixed", {"fixed": {"lr": 0.25}})
    state = support(torch.zeros(2, 2), torch.tensor([0, 1]))
    new, rate, _ = inner_update(rule, {}, {"w": torch.ones(3)}, {"w": torch.full((3,), 2.0)}, 4, state, {})
    assert rate.item() == 0.25
    torch.testing.assert_close(new["w"], torch.full((3,), 0.5))


def test_registry_lists_the_paper_rules():
    assert {"fixed", "mlplr"} <= set(RULES)
    with pytest.raises(KeyError, match="valid"):
        make_rule("nope", {})
