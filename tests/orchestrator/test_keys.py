"""Keys survive upgrades: a golden file holds the key of every cell of every shipped grid
(and of its --smoke variant), and a new option with a neutral default moves no key.

When a change moves a golden key on purpose (a new key SCHEME), regenerate the file with
`python -m tests.orchestrator.test_keys` and say so in CHANGELOG.md: every stored result of
every user reads as missing after it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.spec import keys
from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec, smoke
from trainers import config

GRIDS_DIR = Path(__file__).parents[2] / "grids"
GOLDEN = Path(__file__).with_name("golden_keys.json")


def all_keys() -> dict[str, list[str]]:
    out = {}
    for path in sorted(GRIDS_DIR.glob("*.yaml")):
        spec = load_spec(path)
        out[path.name] = [t.key for t in expand(spec)]
        out[f"{path.name} --smoke"] = [t.key for t in expand(smoke(spec))]
    return out


def test_golden_keys_of_every_shipped_grid():
    assert all_keys() == json.loads(GOLDEN.read_text())


def test_baseline_covers_every_identity_leaf_of_today():
    # Every leaf that exists when the scheme was frozen is in the baseline; a leaf missing from
    # it would be compared with a default that a later release may change.
    today = set(keys.leaves(config.DEFAULTS)) - set(config.NON_IDENTITY)
    assert today <= set(keys.BASELINE)


def test_default_cell_hashes_only_the_scheme():
    assert keys.identity(config.default_config()) == {}
    assert keys.canonical_json(config.default_config()) == '{"differs":{},"scheme":2}'


@pytest.fixture
def neutral_option(monkeypatch):
    """A release adds `model.stem_stride` (default 1: today's behaviour), the way a new option
    is added: a default and a checker."""
    defaults = json.loads(json.dumps(config.DEFAULTS))
    defaults["model"]["stem_stride"] = 1
    monkeypatch.setattr(config, "DEFAULTS", defaults)
    monkeypatch.setitem(config.CHECKS, "model.stem_stride", config.number(0, integer=True))
    monkeypatch.setattr(config, "PATHS", tuple(config.CHECKS) + config.SECTIONS)


def test_a_neutral_new_option_moves_no_key(neutral_option):
    assert all_keys() == json.loads(GOLDEN.read_text())


def test_a_new_option_set_away_from_its_default_moves_the_key(neutral_option, tmp_path):
    path = GRIDS_DIR / "quickstart.yaml"
    before = [t.key for t in expand(load_spec(path))]
    moved = [t.key for t in expand(load_spec(path, ["model.stem_stride=2"]))]
    assert len(set(moved)) == len(before) and not set(moved) & set(before)


def test_where_and_how_it_runs_is_not_in_the_key():
    path = GRIDS_DIR / "quickstart.yaml"
    before = [t.key for t in expand(load_spec(path))]
    for change in (
        "train.device=cpu",
        "train.channels_last=true",
        "train.compile=true",
        "dataset.root=/elsewhere",
        "dataset.download=false",
        "resources.pack=4",
    ):
        assert [t.key for t in expand(load_spec(path, [change]))] == before, change
    assert [t.key for t in expand(load_spec(path, ["train.precision=fp32"]))] != before


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(all_keys(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
