"""The table of stages: planning imports nothing heavy, every job is named once, identities follow reads."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from metalr import config as config_mod
from metalr import dvcgen, provenance, stages
from metalr.config import DEFAULT_CONFIG, REPO_ROOT, Run

FILES = {name: [DEFAULT_CONFIG] + ([REPO_ROOT / "config" / f"{name}.yaml"] if name != "default" else [])
         for name in ("default", "quick", "paper", "extended")}


@pytest.fixture(scope="module", params=sorted(FILES))
def cfg(request):
    return config_mod.load(FILES[request.param])


PLANNING = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from metalr import config, dvcgen, provenance, stages
    files = sys.argv[1:]
    cfg = config.load(files)
    sources = provenance.sources(files, cfg)
    root = Path(config.REPO_ROOT)
    jobs = 0
    for stage in stages.STAGES.values():
        stages.code_digest(stage, root)
        for job in stage.jobs(cfg):
            stage.inputs(cfg, job, root), stage.outputs(cfg, job), stages.settings_digest(stage, cfg, job, sources)
            stages.command_line(stage, cfg, job)
            jobs += 1
    dvcgen.render([str(Path(f).relative_to(root)) for f in files], root)
    heavy = sorted(m for m in ("torch", "pandas", "matplotlib", "numpy", "scipy") if m in sys.modules)
    print(json.dumps({"jobs": jobs, "heavy": heavy}))
""")


def test_planning_the_paper_grid_imports_no_torch_pandas_or_matplotlib():
    """What common.smk and `metalr dvc-yaml` run to plan: config validation, every job's files, identity,
    code digest and command, the whole dvc.yaml. In a fresh interpreter, so nothing was imported before."""
    result = subprocess.run([sys.executable, "-c", PLANNING, *map(str, FILES["paper"])], capture_output=True,
                            text=True, check=True)
    planned = json.loads(result.stdout)
    assert planned["jobs"] > 200 and planned["heavy"] == []
    # the negative control: the same check sees torch when a job's code is imported
    control = subprocess.run([sys.executable, "-c", "import sys, metalr.train.loop; print('torch' in sys.modules)"],
                             capture_output=True, text=True, check=True)
    assert control.stdout.strip() == "True"


def test_no_two_jobs_write_the_same_file(cfg):
    written: dict[str, str] = {}
    for stage in stages.STAGES.values():
        for job in stage.jobs(cfg):
            for path in stage.outputs(cfg, job).values():
                assert path not in written, f"{path}: {written.get(path)} and {stage.dvc_name(job)}"
                written[path] = stage.dvc_name(job)
    checkpoints = {str(stages.checkpoint_file(cfg, r)) for r in config_mod.grid_runs(cfg)}
    assert len(checkpoints) == len(config_mod.grid_runs(cfg))
    assert not any(c.startswith(f) or f.startswith(c) for c in checkpoints for f in written)  # outside outputs


def test_every_input_is_made_by_one_stage_or_committed(cfg):
    made = {path for stage in stages.STAGES.values() for job in stage.jobs(cfg)
            for path in stage.outputs(cfg, job).values()}
    for stage in stages.default_stages(pdf=True):
        for job in stage.jobs(cfg):
            for path in (p for paths in stage.inputs(cfg, job, REPO_ROOT).values() for p in paths):
                assert path in made or (REPO_ROOT / path).is_file(), f"{stage.dvc_name(job)}: {path}"


def test_patterns_are_the_jobs_paths_with_their_wildcards(cfg):
    """Snakemake's output patterns, filled with a job's wildcards, give that job's outputs."""
    for stage in stages.STAGES.values():
        patterns = stage.outputs(cfg, stage.pattern_job())
        for job in stage.jobs(cfg)[:3]:
            assert {k: p.format(**job) for k, p in patterns.items()} == stage.outputs(cfg, job)


def test_run_ids_round_trip_and_bad_ones_are_refused():
    run = Run("mini_imagenet", 20, 5, "meta-sgd", "lslr", 3)
    assert run.run_id == "mini_imagenet/20w5s/meta-sgd/lslr/seed3" and Run.parse(run.run_id) == run
    for bad in ("glyphs/5w1s/maml/fixed", "glyphs/5x1s/maml/fixed/seed1", "glyphs/5w1s/maml/fixed/seedX"):
        with pytest.raises(config_mod.ConfigError, match="is not of the form"):
            Run.parse(bad)


def leaf_keys(cfg):
    return [key for key, _ in provenance.leaves(cfg)]


def changed(cfg, key):
    """``cfg`` with the leaf at ``key`` set to another value of the same kind."""
    out = json.loads(json.dumps(cfg))
    *parents, last = key.split(".")
    node = out
    for part in parents:
        node = node[part]
    value = node[last]
    node[last] = (not value if isinstance(value, bool) else value + 1 if isinstance(value, (int, float))
                  else value + [value[-1]] if isinstance(value, list) and value else [1] if isinstance(value, list)
                  else f"{value}x")
    return out


def covered(key: str, reads: list[str]) -> bool:
    return any(key == r or key.startswith(r + ".") for r in reads)


def test_a_job_identity_changes_exactly_when_a_value_it_reads_changes():
    """For every leaf of the quick config and every job: the digest moves iff the leaf is under a read key."""
    cfg = config_mod.load(FILES["quick"])
    sources = provenance.sources(FILES["quick"], cfg)
    jobs = [(stage, job) for stage in stages.STAGES.values() for job in stage.jobs(cfg)[:2]]
    before = {(s.name, json.dumps(j)): stages.settings_digest(s, cfg, j, sources) for s, j in jobs}
    for key in leaf_keys(cfg):
        other = changed(cfg, key)
        for stage, job in jobs:
            moved = stages.settings_digest(stage, other, job, sources) != before[(stage.name, json.dumps(job))]
            assert moved == covered(key, stage.reads(cfg, job)), (key, stage.name, job)


def test_identities_of_a_run_and_of_its_task_list(tmp_path):
    """A concrete case: evaluate.tasks reaches an evaluation only through its task list's file."""
    base = config_mod.load([DEFAULT_CONFIG])
    fewer_tasks = config_mod.merge(base, {"evaluate": {"tasks": 50}})
    other_fixed_lr = config_mod.merge(base, {"rules": {"fixed": {"lr": 0.1}}})
    mlplr = stages.run_job(Run("glyphs", 5, 1, "maml", "mlplr", 1))
    cell = {"dataset": "glyphs", "ways": "5", "shots": "1"}
    for stage, job, cfg, moves in (("train", mlplr, fewer_tasks, False), ("train", mlplr, other_fixed_lr, False),
                                   ("evaluate", mlplr, fewer_tasks, False), ("tasks", cell, fewer_tasks, True),
                                   ("tasks", cell, other_fixed_lr, False),
                                   ("evaluate", {**mlplr, "rule": "fixed"}, other_fixed_lr, True)):
        assert (stages.settings_digest(stage, cfg, job) != stages.settings_digest(stage, base, job)) == moves


def test_the_report_identity_follows_the_sources_of_the_values():
    cfg = config_mod.load(FILES["quick"])
    sources = provenance.sources(FILES["quick"], cfg)
    retagged = {**sources, "model.filters": {**sources["model.filters"], "tag": "paper"}}
    assert stages.settings_digest("report", cfg, {}, sources) != stages.settings_digest("report", cfg, {}, retagged)
    assert stages.settings_digest("train", cfg, stages.run_job(config_mod.grid_runs(cfg)[0]), retagged) == \
        stages.settings_digest("train", cfg, stages.run_job(config_mod.grid_runs(cfg)[0]), sources)
    with pytest.raises(ValueError, match="reads the sources"):
        stages.settings("report", cfg, {})


def test_the_resolved_config_is_written_only_when_its_content_changes(tmp_path):
    cfg = config_mod.load(FILES["quick"])
    sources = provenance.sources(FILES["quick"], cfg)
    written = stages.write_resolved(cfg, sources, tmp_path)
    assert sorted(p.name for p in written) == ["config-sources.yaml", "config.yaml"]
    resolved = tmp_path / stages.fill(stages.RESOLVED_CONFIG, cfg)
    assert config_mod.load([resolved]) == cfg  # a complete config: read alone, it is the same config
    stamp = resolved.stat().st_mtime_ns
    assert stages.write_resolved(cfg, sources, tmp_path) == [] and resolved.stat().st_mtime_ns == stamp
    other = config_mod.merge(cfg, {"train": {"iterations": 61}})
    assert stages.write_resolved(other, sources, tmp_path) == [resolved]
    assert yaml.safe_load(resolved.read_text())["train"]["iterations"] == 61


def test_dvc_params_are_the_reads_the_resolved_config_holds(cfg):
    generated = dvcgen.generate([str(f.relative_to(REPO_ROOT)) for f in FILES["quick"]], REPO_ROOT)
    quick = config_mod.load(FILES["quick"])
    resolved = stages.fill(stages.RESOLVED_CONFIG, quick)
    for name, entry in generated["stages"].items():
        for params in entry.get("params", []):
            assert list(params) == [resolved]
            for key in params[resolved]:
                assert stages.lookup(quick, key) is not None or config_mod.has_key(quick, key.split(".")), (name, key)
        for folder in (p for p in (REPO_ROOT / "src" / "metalr").iterdir() if p.is_dir() and p.name != "__pycache__"):
            files = [dep for dep in entry["deps"] if dep.startswith(f"src/metalr/{folder.name}/")]
            assert len(files) < len(list(folder.glob("*.py"))) - 1, f"{name}: {folder.name} listed file by file"
