"""Expansion: products, include, exclude, aliases, de-duplication and key stability."""

import json
import textwrap

import pytest

from orchestrator.cli.main import main
from orchestrator.spec.expand import expand
from orchestrator.spec.keys import cell_key
from orchestrator.spec.load import load_spec, smoke
from trainers.errors import GridError


def spec_of(tmp_path, text, overrides=()):
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return load_spec(path, overrides)


NIN = """
name: nin
model: {arch: nin}
grid:
  activation: [relu, elu]
  batch_norm: [false, true]
  init: [default, he_normal]
include:
  - {activation: leaky_relu, batch_norm: true, init: he_normal}
  - {activation: maxout, batch_norm: true, init: he_normal}
"""


def test_product_order_and_params(tmp_path):
    trials = expand(
        spec_of(tmp_path, "name: g\ngrid: {arch: [model_a, model_b], lr: [0.1, 0.01, 0.5]}")
    )
    assert len(trials) == 6
    assert [t.params for t in trials[:3]] == [
        {"model.arch": "model_a", "train.lr": 0.1},
        {"model.arch": "model_a", "train.lr": 0.01},
        {"model.arch": "model_a", "train.lr": 0.5},
    ]
    assert all(t.config["model"]["arch"] == t.params["model.arch"] for t in trials)
    assert len({t.key for t in trials}) == 6


def test_include_adds_cells_with_all_axis_params(tmp_path):
    trials = expand(spec_of(tmp_path, NIN))
    assert len(trials) == 10  # 2 x 2 x 2 + LeakyReLU + Maxout, as the NIN table
    last = trials[-1]
    assert last.params == {
        "model.activation": "maxout",
        "model.batch_norm": True,
        "model.init": "he_normal",
    }


def test_exclude_removes_matching_cells(tmp_path):
    text = (
        "name: g\ngrid: {arch: [model_a, model_b], lr: [0.1, 0.01]}\n"
        "exclude: [{arch: model_a, lr: 0.1}, {lr: 0.5}]"
    )
    trials = expand(spec_of(tmp_path, text))
    assert len(trials) == 3
    assert {"model.arch": "model_a", "train.lr": 0.1} not in [t.params for t in trials]


def test_exclude_everything_is_an_error(tmp_path):
    with pytest.raises(GridError, match="exclude: removes every cell"):
        expand(spec_of(tmp_path, "name: g\ngrid: {lr: [0.1]}\nexclude: [{lr: 0.1}]"))


def test_duplicate_cells_collapse(tmp_path):
    text = "name: g\ntrain: {lr: 0.1}\ngrid: {lr: [0.1, 0.1, 0.2]}\ninclude: [{lr: 0.2}]"
    assert len(expand(spec_of(tmp_path, text))) == 2


def test_aliases_and_dotted_paths_give_same_keys(tmp_path):
    a = expand(spec_of(tmp_path, "name: g\ngrid: {lr: [0.1], seed: [0, 1]}"))
    b = expand(spec_of(tmp_path, "name: g\ngrid: {train.lr: [0.1], train.seed: [0, 1]}"))
    assert [t.key for t in a] == [t.key for t in b]


def test_key_is_independent_of_yaml_key_order(tmp_path):
    a = spec_of(
        tmp_path,
        """
        name: g
        model: {arch: nin, batch_norm: true}
        train: {epochs: 3, optimizer: {momentum: 0.8, name: sgd}}
        grid: {lr: [0.1]}""",
    )
    b = spec_of(
        tmp_path,
        """
        grid: {lr: [0.1]}
        train: {optimizer: {name: sgd, momentum: 0.8}, epochs: 3}
        model: {batch_norm: true, arch: nin}
        name: g""",
    )
    assert expand(a)[0].key == expand(b)[0].key


def test_key_is_stable_across_runs(tmp_path):
    # A fixed expected key: any change to canonicalisation or defaults shows up here, because
    # it would make every store re-run every cell.
    trial = expand(spec_of(tmp_path, "name: g\nmodel: {arch: nin}\ntrain: {lr: 0.1}"))[0]
    assert trial.key == "be310818815c"
    assert trial.key == cell_key(json.loads(json.dumps(trial.config)))


def test_key_changes_with_training_values_not_with_where_or_resources(tmp_path):
    base = expand(spec_of(tmp_path, "name: g\ntrain: {lr: 0.1}"))[0].key
    same = [
        "name: other\ntrain: {lr: 0.1}\nresources: {gpu: 0.25, cpu: 4, pack: 4}",
        "name: g\ntrain: {lr: 0.1, device: cpu}\ndataset: {root: /elsewhere, download: false}",
        "name: g\ntrain: {lr: 1e-1}",
        "name: g\ntrain: {lr: 0.1}\ndataset: {augment: [flip, crop]}",
    ]
    for text in same:
        assert expand(spec_of(tmp_path, text))[0].key == base, text
    for text in [
        "name: g\ntrain: {lr: 0.2}",
        "name: g\ntrain: {lr: 0.1, seed: 1}",
        "name: g\ntrain: {lr: 0.1, optimizer: {weight_decay: 0.0005}}",
        "name: g\ntrain: {lr: 0.1}\ndataset: {augment: [flip]}",
    ]:
        assert expand(spec_of(tmp_path, text))[0].key != base, text


def test_grown_grid_keeps_old_keys(tmp_path):
    small = expand(spec_of(tmp_path, "name: g\ngrid: {lr: [0.1, 0.05]}"))
    grown = expand(spec_of(tmp_path, "name: g\ngrid: {lr: [0.1, 0.05, 0.01]}"))
    assert {t.key for t in small} < {t.key for t in grown}


def test_nested_axis_value_merges_onto_base(tmp_path):
    trials = expand(
        spec_of(
            tmp_path,
            """
        name: g
        train: {schedule: {name: multistep, milestones: [3], gamma: 0.5}}
        grid: {train.schedule.name: [multistep, cosine]}""",
        )
    )
    assert [t.config["train"]["schedule"]["name"] for t in trials] == ["multistep", "cosine"]
    assert trials[1].config["train"]["schedule"]["gamma"] == 0.5


def test_smoke_caps_and_keeps_cells_distinct(tmp_path):
    spec = smoke(spec_of(tmp_path, "name: g\ngrid: {lr: [0.1, 0.05]}\ntrain: {epochs: 350}"))
    trials = expand(spec)
    assert len(trials) == 2 and trials[0].grid == "g-smoke"
    cfg = trials[0].config
    assert cfg["train"]["epochs"] == 1 and cfg["dataset"]["subset"] == 512
    assert cfg["model"]["width"] == 0.25


def test_plan_json(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(NIN)
    assert main(["plan", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["grid"] == "nin" and out["count"] == 10
    assert {"key", "params", "config"} <= set(out["cells"][0])
    assert out["cells"][0]["params"]["model.activation"] == "relu"


def test_plan_table(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(NIN)
    assert main(["plan", str(path), "--set", "train.epochs=7"]) == 0
    out = capsys.readouterr().out
    assert "nin: 10 cells" in out and "70" in out and "activation" in out
