"""The model zoo: every registered model builds, trains a step, has the papers' sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers.errors import GridError
from trainers.models import ALIASES, MODELS, PAPER_PARAMS, count_params, create_model, list_models
from trainers.models.allcnn import TABLES

CANONICAL = [
    "model_a",
    "model_b",
    "model_c",
    "strided_a",
    "strided_b",
    "strided_c",
    "convpool_a",
    "convpool_b",
    "convpool_c",
    "allcnn_a",
    "allcnn_b",
    "allcnn_c",
    "nin",
    "resnet9",
    "resnet12",
    "resnet15",
    "resnet18",
    "densenet59",
    "plaincnn",
]

# Layer-table counts, 10 classes, no batch norm, width 1 (see allcnn.py's docstring).
EXACT_PARAMS = {
    "model_a": 839_242,
    "model_b": 885_610,
    "model_c": 954_730,
    "allcnn_a": 1_254_250,
    "allcnn_b": 1_300_618,
    "allcnn_c": 1_369_738,
    "nin": 966_986,
}
for _l in "abc":
    EXACT_PARAMS[f"strided_{_l}"] = EXACT_PARAMS[f"model_{_l}"]
    EXACT_PARAMS[f"convpool_{_l}"] = EXACT_PARAMS[f"allcnn_{_l}"]


def _step(model: nn.Module, num_classes: int, n: int = 2) -> torch.Tensor:
    """One forward + backward on random data; returns the logits."""
    torch.manual_seed(0)
    x = torch.randn(n, 3, 32, 32)
    y = torch.randint(0, num_classes, (n,))
    model.train()
    out = model(x)
    loss = nn.functional.cross_entropy(out, y)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), name
    return out


def test_registry_holds_exactly_the_canonical_names():
    assert list_models() == sorted(CANONICAL)
    assert set(MODELS) == set(CANONICAL)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("batch_norm", [False, True])
def test_every_model_trains_a_step(name, batch_norm):
    model = create_model(name, batch_norm=batch_norm, width=0.25, dropout=0.5, input_dropout=0.2)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert has_bn == batch_norm
    assert _step(model, 10).shape == (2, 10)


@pytest.mark.parametrize("name", list_models())
def test_hundred_classes(name):
    model = create_model(name, num_classes=100, width=0.25).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, 32, 32)).shape == (3, 100)


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_exact_param_counts(name):
    assert count_params(create_model(name, num_classes=10)) == EXACT_PARAMS[name]


@pytest.mark.parametrize("name,expected", [("resnet9", 6_573_130), ("resnet18", 11_173_962)])
def test_resnet_counts_match_seed_003_with_batch_norm(name, expected):
    assert count_params(create_model(name, batch_norm=True)) == expected


def test_paper_params_cover_the_allcnn_family():
    assert set(PAPER_PARAMS) == set(TABLES)
    assert set(PAPER_PARAMS) <= set(list_models())
    assert PAPER_PARAMS["allcnn_c"] == 1_400_000 and PAPER_PARAMS["model_b"] == 1_000_000


def test_width_scales_channels_but_keeps_the_class_conv():
    model = create_model("allcnn_c", width=0.5, num_classes=7)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 48 and convs[-2].out_channels == 96
    assert convs[-1].out_channels == 7
    tiny = create_model("model_a", width=0.001)
    assert min(m.out_channels for m in tiny.modules() if isinstance(m, nn.Conv2d)) == 1


def feature_sides(model: nn.Module) -> list[int]:
    """The side of each conv's output, in order, for one 32x32 image."""
    sides: list[int] = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda m, i, o: sides.append(o.shape[-1]))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    return sides


def test_allcnn_c_layout_follows_the_paper():
    """9 convs; stride-2 3x3 convs replace pooling; the top 3x3 conv is valid -> 6x6."""
    model = create_model("allcnn_c").eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [3, 3, 3, 3, 3, 3, 3, 1, 1]
    assert [c.stride[0] for c in convs] == [1, 1, 2, 1, 1, 2, 1, 1, 1]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert feature_sides(model)[6] == 6


@pytest.mark.parametrize(
    ("name", "same", "one"),
    [
        # 5x5 convs shrink by 2 at padding 1; the pools keep their own padding
        ("model_a", [32, 16, 6, 6, 6], [30, 13, 7, 7, 7]),
        ("strided_b", [32, 16, 16, 8, 6, 6, 6], [30, 15, 13, 7, 7, 7, 7]),
        # 3x3 convs are "same" either way but the top one, "valid" in the papers' tables
        ("allcnn_c", [32, 32, 16, 16, 16, 8, 6, 6, 6], [32, 32, 16, 16, 16, 8, 8, 8, 8]),
    ],
)
def test_padding_n_pads_every_conv_larger_than_1x1_and_keeps_the_parameters(name, same, one):
    # seed 001's reproduction: "a filter size larger than 1 have a padding of 1" (§2.2)
    default, padded = create_model(name), create_model(name, padding=1)
    assert feature_sides(default) == same
    assert feature_sides(padded) == one
    assert count_params(padded) == count_params(default) == EXACT_PARAMS[name]
    # the fc head: a dense layer on the padded map, then a dense layer on its output
    fc = create_model(name, padding=1, head="fc")
    assert feature_sides(fc) == one[:-2] + [1, 1]
    assert count_params(fc) > count_params(create_model(name, head="fc"))


@pytest.mark.parametrize("letter", "abc")
def test_variants_transform_the_pooling(letter):
    def kinds(name):
        return [r[0] for r in TABLES[name]]

    assert kinds(f"model_{letter}").count("maxpool") == 2
    assert kinds(f"strided_{letter}").count("maxpool") == 0
    assert kinds(f"convpool_{letter}").count("maxpool") == 2
    assert kinds(f"allcnn_{letter}").count("maxpool") == 0
    strided = [r for r in TABLES[f"strided_{letter}"] if r[0] == "conv"]
    assert sum(r[3] == 2 for r in strided) == 2


def test_dropout_placement():
    model = create_model("allcnn_c", dropout=0.5, input_dropout=0.2)
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.2, 0.5, 0.5]
    assert not any(isinstance(m, nn.Dropout) for m in create_model("allcnn_c").modules())


def test_aliases_resolve():
    for name in ALIASES.values():
        assert name in MODELS
    assert count_params(create_model("All_CNN_C")) == EXACT_PARAMS["allcnn_c"]


def test_list_models_pattern():
    assert list_models("allcnn*") == ["allcnn_a", "allcnn_b", "allcnn_c"]
    assert list_models("resnet*") == ["resnet12", "resnet15", "resnet18", "resnet9"]
    assert list_models("nothing*") == []


def test_unknown_model_suggests_a_name():
    with pytest.raises(GridError, match=r"model\.arch.*did you mean 'allcnn_c'.*model_a"):
        create_model("allcnn_cc")


@pytest.mark.parametrize(
    "kw,key",
    [
        ({"width": 0}, "model.width"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"input_dropout": -0.1}, "model.input_dropout"),
        ({"activation": "relux"}, "model.activation"),
    ],
)
def test_bad_values_raise_grid_error(kw, key):
    with pytest.raises(GridError, match=key.replace(".", r"\.")):
        create_model("model_a", **kw)
