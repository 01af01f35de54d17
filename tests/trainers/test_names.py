"""trainers/names.py, the torch-free names a spec is checked against, match the registries."""

from trainers import names
from trainers.activations import ACTIVATIONS
from trainers.inits import INITS
from trainers.models import list_models
from trainers.models.registry import MODELS


def test_the_names_are_the_registries():
    assert list(names.MODELS) == list_models()
    assert sorted(names.INITS) == sorted(INITS)
    assert sorted(names.ACTIVATIONS) == sorted(ACTIVATIONS)


def test_every_alias_names_a_model():
    assert set(names.ALIASES.values()) <= set(MODELS)
