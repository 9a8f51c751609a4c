"""Plug-in registries: each rule, algorithm and backbone is one module plus one registry line, wired everywhere."""
from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

import torch

from metalr import cli
from metalr import config as config_mod
from metalr import provenance
from metalr.algorithms import ALGORITHMS, get_algorithm
from metalr.models import BACKBONES, get_backbone, widths
from metalr.plugins import PluginError, Registry, read_spec
from metalr.report import aggregate, choices
from metalr.steprules import RULES, make_rule

REGISTRIES = {"rules": RULES, "algorithms": ALGORITHMS}


@pytest.mark.parametrize("registry", [RULES, ALGORITHMS, BACKBONES], ids=["rules", "algorithms", "backbones"])
def test_the_spec_read_without_importing_equals_the_modules_own(registry):
    for plugin in registry.values():
        assert read_spec(plugin.module) == importlib.import_module(plugin.module).SPEC, plugin.module


def test_every_rule_is_wired_everywhere_from_its_spec():
    """Config defaults and schema, the ledger's sources, the report's labels and the implementation's flags
    all come from the registry: adding a rule needs nothing else."""
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG])
    schema = config_mod._schema()["properties"]["rules"]["properties"]
    for name, plugin in RULES.items():
        assert cfg["rules"][name] == plugin.defaults()
        assert set(schema[name]["properties"]) == set(plugin.settings)
        assert aggregate.rule_label(name) == plugin.label
        rule = make_rule(name, {})
        assert (rule.name, rule.learned) == (name, plugin.flag("learned"))
        for setting in plugin.settings.values():
            assert setting.source.startswith("["), (name, setting.name)
            if setting.tune is not None and setting.tune.choices is None:
                assert setting.tune.low <= setting.default <= setting.tune.high, (name, setting.name)


def test_every_algorithm_is_wired_everywhere_from_its_spec():
    cfg = config_mod.load([config_mod.DEFAULT_CONFIG])
    for name, plugin in ALGORITHMS.items():
        algorithm = get_algorithm(name, cfg["algorithms"], get_backbone(cfg["model"]["name"]))
        assert algorithm.name == name and aggregate.algorithm_label(name) == plugin.label
        assert algorithm.trains_rule_meta == plugin.flag("trains_rule_meta")
        assert algorithm.batches_training == plugin.flag("batches_training")
        for setting, default in plugin.defaults().items():
            assert getattr(algorithm, setting) == default == cfg["algorithms"][name][setting]


def ledger_of(files):
    cfg = config_mod.load(files)
    return {c.key: c for c in choices.ledger(cfg, provenance.sources(files, cfg))}


def test_every_backbone_is_wired_everywhere_from_its_spec():
    """Selectable in every config key that names one (training, evaluation and fidelity through model.name, cost,
    scaling) and in `metalr bench`; its SPEC's widths are the ones it builds."""
    base = config_mod.read_yaml(config_mod.DEFAULT_CONFIG)
    parser = cli.build_parser()
    for name, plugin in BACKBONES.items():
        assert parser.parse_args(["bench", "--backbones", name]).backbones == [name]
        layer = {"model": {"name": name}, "analysis": {"cost": {"backbone": name}, "scaling": {"backbone": name}}}
        cfg = config_mod.resolve(config_mod.merge(base, layer))
        assert [cfg["model"]["name"], cfg["analysis"]["cost"]["backbone"], cfg["analysis"]["scaling"]["backbone"]] \
            == [name] * 3
        params = get_backbone(name).init(torch.Generator(), 3, 16, 5, 8)
        built = [v.shape[0] for k, v in params.items() if v.dim() == 4]  # convolution weights: [out, in, kh, kw]
        assert sorted(set(built)) == sorted(set(widths(name, 8))) and plugin.label


def test_bench_refuses_an_unknown_backbone(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["bench", "--backbones", "resnet18"])
    assert "invalid choice: 'resnet18'" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["model.name", "analysis.cost.backbone", "analysis.scaling.backbone"])
def test_an_unknown_backbone_is_refused_with_the_valid_ones(key):
    layer: dict = {}
    node = layer
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = "resnet18"
    with pytest.raises(config_mod.ConfigError, match=rf"{key}: 'resnet18' is not allowed; allowed values: "
                                                     rf"\['conv4', 'resnet12'\]"):
        config_mod.resolve(config_mod.merge(config_mod.read_yaml(config_mod.DEFAULT_CONFIG), layer))


def test_ledger_takes_a_plugin_default_source_from_its_spec(tmp_path):
    ledger = ledger_of([config_mod.DEFAULT_CONFIG])
    assert ledger["rules.fixed.lr"].tag == "MAML" and ledger["rules.fixed.lr"].set_in == "metalr.steprules.fixed"
    assert ledger["rules.mlplr.lr_max"].source.startswith(choices.OURS)
    layered = tmp_path / "layer.yaml"
    layered.write_text("rules:\n  fixed:\n    lr: 0.1  # [quick] smaller\n")
    ledger = ledger_of([config_mod.DEFAULT_CONFIG, layered])
    assert (ledger["rules.fixed.lr"].value, ledger["rules.fixed.lr"].tag) == ("0.1", "quick")


def test_a_config_value_outside_a_settings_schema_is_refused():
    with pytest.raises(config_mod.ConfigError, match=r"rules.mlplr.divergence: 'kl' is not allowed; allowed values: "
                                                     r"\['kl_label_pred', 'kl_div_mean'\]"):
        config_mod.resolve(config_mod.merge(config_mod.read_yaml(config_mod.DEFAULT_CONFIG),
                                            {"rules": {"mlplr": {"divergence": "kl"}}}))
    with pytest.raises(config_mod.ConfigError, match=r"rules.fixed: unknown key\(s\) \['rate'\]"):
        config_mod.resolve(config_mod.merge(config_mod.read_yaml(config_mod.DEFAULT_CONFIG),
                                            {"rules": {"fixed": {"rate": 0.1}}}))


def test_loading_and_validating_a_config_imports_no_torch():
    code = ("import sys; from metalr import config; config.load([config.DEFAULT_CONFIG]); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_malformed_specs_are_named(tmp_path, monkeypatch):
    package = tmp_path / "fakeplugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "computed.py").write_text("SPEC = {'label': 'x', 'learned': bool(1)}\n")
    (package / "missing.py").write_text("LABEL = 'x'\n")
    (package / "unflagged.py").write_text("SPEC = {'label': 'x'}\n")
    (package / "bad_setting.py").write_text(textwrap.dedent("""
        SPEC = {'label': 'x', 'learned': False, 'settings': {'lr': {'default': 0.1, 'source': '[ours]'}}}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="fakeplugins.computed.SPEC must be a literal"):
        read_spec("fakeplugins.computed")
    with pytest.raises(PluginError, match="fakeplugins.missing has no top-level literal SPEC"):
        read_spec("fakeplugins.missing")
    with pytest.raises(PluginError, match=r"fakeplugins.unflagged.SPEC lacks \['learned'\]"):
        Registry("rule", {"u": "fakeplugins.unflagged:X"}, required_flags=("learned",))["u"]
    with pytest.raises(PluginError, match=r"missing keys \['doc'\]"):
        Registry("rule", {"b": "fakeplugins.bad_setting:X"}, required_flags=("learned",))["b"].settings
    with pytest.raises(KeyError, match=r"unknown rule 'nope'; valid: \['b'\]"):
        Registry("rule", {"b": "fakeplugins.bad_setting:X"})["nope"]
