"""Spec loading and validation: every bad input gets a one-line error naming file and key."""

import subprocess
import sys
import textwrap

import pytest

from orchestrator.cli.main import main
from orchestrator.spec.load import load_spec, smoke
from trainers.errors import GridError

BASE = """
name: t
model: {arch: allcnn_c, width: 0.25}
train: {epochs: 2}
grid:
  lr: [0.1, 0.05]
"""


def write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(tmp_path, text, overrides=()):
    with pytest.raises(GridError) as e:
        load_spec(write(tmp_path, text), overrides)
    return str(e.value)


def test_defaults_and_overrides_resolve(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert spec.name == "t"
    assert spec.base["model"]["width"] == 0.25
    assert spec.base["train"]["optimizer"]["momentum"] == 0.9  # default kept
    assert spec.axes == {"train.lr": [0.1, 0.05]}
    assert spec.resources == {"cpu": 1.0, "gpu": "auto", "pack": 1}
    assert spec.max_failures == 2
    assert len(spec.sha256) == 64


def test_set_replaces_axis_and_sets_values(tmp_path):
    spec = load_spec(
        write(tmp_path, BASE),
        ["lr=[0.2,0.3,0.4]", "train.epochs=5", "grid.seed=[0,1]", "batch_norm=true"],
    )
    assert spec.axes["train.lr"] == [0.2, 0.3, 0.4]
    assert spec.axes["train.seed"] == [0, 1]
    assert spec.base["train"]["epochs"] == 5
    assert spec.base["model"]["batch_norm"] is True


def test_int_lr_is_the_same_value_as_float(tmp_path):
    spec = load_spec(write(tmp_path, BASE), ["lr=1"])
    assert spec.axes["train.lr"] == [1.0] and isinstance(spec.axes["train.lr"][0], float)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: t\ngrid: {lr: [0.1, 0.05, fast]}", "grid.lr[2]: expected a number, got 'fast'"),
        ("name: t\ngrid: {lr: []}", "grid.lr: empty axis"),
        (
            "name: t\ngrid: {model.archh: [allcnn_c]}",
            "grid.model.archh: unknown key 'model.archh' (did you mean 'model.arch'?)",
        ),
        ("name: t\ngrdi: {lr: [0.1]}", "grdi: unknown top-level key (did you mean 'grid'?)"),
        ("name: t\ntrain: {epochs: 0}", "train.epochs: must be > 0, got 0"),
        ("name: t\ntrain: {epochs: -3}", "train.epochs: must be > 0, got -3"),
        ("name: t\ntrain: {epochs: 2.5}", "train.epochs: expected an integer, got 2.5"),
        ("name: t\ntrain: {lr: -0.1}", "train.lr: must be > 0, got -0.1"),
        ("name: t\ntrain: {lr: 0}", "train.lr: must be > 0, got 0"),
        (
            "name: t\nmodel: {batch_norm: maybe}",
            "model.batch_norm: expected true or false, got 'maybe'",
        ),
        ("name: t\nmodel: {arch: allcnn_d}", "model.arch: unknown arch 'allcnn_d' (did you mean "),
        (
            "name: t\ngrid: {init: [he_norml]}",
            "grid.init[0]: unknown init 'he_norml' (did you mean 'he_normal'?)",
        ),
        ("name: t\ngrid: {activation: [rleu]}", "unknown activation 'rleu' (did you mean 'relu'?)"),
        (
            "name: t\ndataset: {name: cifar11}",
            "dataset.name: unknown dataset 'cifar11' (did you mean ",
        ),
        (
            "name: t\ntrain: {optimizer: {name: sgdd}}",
            "train.optimizer.name: unknown optimizer 'sgdd' (did you mean 'sgd'?)",
        ),
        (
            "name: t\ntrain: {schedule: {name: cosin}}",
            "unknown schedule 'cosin' (did you mean 'cosine'?)",
        ),
        (
            "name: t\ninclude: [{arch: allcnn_c, colour: red}]",
            "include[0].colour: unknown key 'colour'",
        ),
        ("name: t\nresources: {gpu: 1.5}", "resources.gpu: a trial trains on one device"),
        ("name: t\nresources: {gpu: -0.5}", "resources.gpu: a trial trains on one device"),
        ("name: t\nresources: {gpus: 1}", "resources.gpus: unknown key (did you mean 'gpu'?)"),
        ("name: t\nresources: {cpu: many}", "resources.cpu: expected a number > 0 or auto"),
        ("name: t\nmax_failures: -1", "max_failures: expected a whole number >= 0"),
        (
            "name: t\nmodel: {padding: valid}",
            "model.padding: must be same or a whole number >= 0, got 'valid'",
        ),
        ("name: t\nmodel: {padding: -1}", "model.padding: must be same or a whole number >= 0"),
        ("name: 'My Grid!'", "name: must be a folder-safe id"),
        ("description: no name", "name: missing"),
        ("name: t\ngrid: {lr: [0.1], train.lr: [0.2]}", "grid.train.lr: the same axis as 'lr'"),
        (
            "name: t\ntables: [{rows: arch, metric: accuracy}]",
            "tables[0].metric: unknown value 'accuracy'",
        ),
        ("name: t\ntables: [{rows: arch, over: lr}]", "tables[0]: best_by and over go together"),
        (
            "name: t\nlr: 0.1",
            "lr: unknown top-level key; config keys go under their section ('train.lr')",
        ),
    ],
)
def test_bad_input_names_file_and_key(tmp_path, text, expected):
    message = errors_of(tmp_path, text)
    assert expected in message
    assert str(tmp_path / "spec.yaml") in message


def test_all_errors_of_a_file_at_once(tmp_path):
    message = errors_of(tmp_path, "name: t\ntrain: {epochs: 0, lr: fast}\ngrid: {arch: []}\n")
    lines = message.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(str(tmp_path / "spec.yaml") + ": ") for line in lines)


def test_yaml_syntax_error_gives_line(tmp_path):
    message = errors_of(tmp_path, "name: t\ngrid: {lr: [0.1, 0.2}\n")
    assert "spec.yaml:2:" in message and "YAML error" in message


def test_duplicate_yaml_keys_are_refused(tmp_path):
    message = errors_of(tmp_path, "name: t\ngrid:\n  lr: [0.1]\n  lr: [0.2]\n")
    assert "duplicate key 'lr'" in message and "spec.yaml:4:" in message


def test_missing_file(tmp_path):
    with pytest.raises(GridError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_yaml_never_constructs_objects(tmp_path):
    marker = tmp_path / "pwned"
    message = errors_of(tmp_path, f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    assert "YAML error" in message
    assert not marker.exists()


def test_duplicate_grid_names_in_one_folder(tmp_path):
    write(tmp_path, "name: same\n", "other.yaml")
    message = errors_of(tmp_path, "name: same\n")
    assert "name: 'same' is also the name of other.yaml" in message


def test_unknown_set_key(tmp_path):
    with pytest.raises(
        GridError,
        match=r"--set trian.epochs=3: unknown key 'trian.epochs' "
        r"\(did you mean 'train.epochs'\?\)",
    ):
        load_spec(write(tmp_path, BASE), ["trian.epochs=3"])


def test_bad_set_value_is_reported_with_key(tmp_path):
    assert "grid.lr[0]: expected a number, got 'fast'" in errors_of(tmp_path, BASE, ["lr=fast"])


def test_table_reference_mapping_becomes_where_list(tmp_path):
    spec = load_spec(
        write(
            tmp_path,
            BASE + "tables:\n  - {rows: arch, metric: test_error, "
            "best_by: val_acc, over: lr, "
            "reference: {allcnn_c: 9.08}}\n",
        )
    )
    t = spec.tables[0]
    assert t["rows"] == ["model.arch"] and t["over"] == "train.lr"
    assert t["reference"] == [{"where": {"model.arch": "allcnn_c"}, "value": 9.08, "label": None}]


BASELINE_GRID = "name: t\ngrid: {arch: [model_a, model_b], batch_norm: [false, true]}\n"


def test_table_baseline_is_normalised_to_paths(tmp_path):
    table = "{rows: [arch, batch_norm], baseline: {model.batch_norm: false}}"
    spec = load_spec(write(tmp_path, BASELINE_GRID + f"tables: [{table}]\n"))
    assert spec.tables[0]["baseline"] == {"model.batch_norm": False}
    plain = load_spec(write(tmp_path, BASE + "tables: [{rows: arch}]\n"))
    assert plain.tables[0]["baseline"] is None


@pytest.mark.parametrize(
    "table,expected",
    [
        (
            "{rows: arch, baseline: {batch_norm: false}}",
            "tables[0].baseline.batch_norm: not a row axis of this table (rows: arch)",
        ),
        (
            "{rows: arch, baseline: {arch: model_c}}",
            "tables[0].baseline.arch: no cell of the spec has arch='model_c'; its cells have "
            "'model_a', 'model_b'",
        ),
        (
            "{rows: arch, baseline: {arch: modle_a}}",
            "tables[0].baseline.arch: unknown arch 'modle_a' (did you mean 'model_a'?)",
        ),
        (
            "{rows: arch, baseline: {colour: red}}",
            "tables[0].baseline.colour: unknown key 'colour'",
        ),
        (
            "{rows: [arch, batch_norm], baseline: {batch_norm: maybe}}",
            "tables[0].baseline.batch_norm: ",
        ),
        (
            "{rows: arch, baseline: model_a}",
            "tables[0].baseline: expected a mapping of row axis -> value",
        ),
        (
            "{rows: arch, baselin: {arch: model_a}}",
            "tables[0].baselin: unknown key (did you mean 'baseline'?)",
        ),
    ],
)
def test_bad_baseline_is_one_line_naming_file_and_key(tmp_path, table, expected):
    message = errors_of(tmp_path, BASELINE_GRID + f"tables: [{table}]\n")
    assert message.count("\n") == 0, message
    assert message.startswith(f"{tmp_path / 'spec.yaml'}: {expected}"), message


def test_smoke_renames_and_caps(tmp_path):
    spec = smoke(load_spec(write(tmp_path, BASE)))
    assert spec.name == "t-smoke"
    assert spec.forced["train.epochs"] == 1


def test_cli_bad_input_exits_2_one_line_per_error(tmp_path, capsys):
    path = write(tmp_path, "name: t\ngrid: {lr: [0.1, fast]}\n")
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"grid: error: {path}: grid.lr[1]: expected a number, got 'fast'\n"


def test_cli_subprocess_prints_no_traceback(tmp_path):
    path = write(tmp_path, "name: t\ntrain: {epochs: -1}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "plan", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "train.epochs: must be > 0, got -1" in proc.stderr


def test_model_aliases_of_the_registry_are_accepted_as_one_cell(tmp_path):
    from orchestrator.spec.expand import expand
    from trainers.models import ALIASES

    spec = load_spec(write(tmp_path, "name: t\ngrid: {arch: [all-cnn-c, allcnn_c, All_CNN_C]}\n"))
    (cell,) = expand(spec)  # one table of aliases: the three spellings are one cell, one key
    assert cell.config["model"]["arch"] == ALIASES["all-cnn-c"] == "allcnn_c"


def test_cpu_auto_loads_and_smoke_keeps_it(tmp_path):
    spec = load_spec(write(tmp_path, BASE), ["resources.cpu=auto", "resources.gpu=0.25"])
    assert spec.resources["cpu"] == "auto" and smoke(spec).resources["cpu"] == "auto"
