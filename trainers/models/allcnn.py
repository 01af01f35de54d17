"""The All-CNN family of Springenberg et al. (2015): base Models A/B/C and their Strided-CNN,
ConvPool-CNN and All-CNN variants, built from layer tables.

Tables: seed 000 Table 1 (the base nets) and seed 001 appendix Tables 3-5 (all variants).
- Strided-CNN: each max-pool removed, the conv before it gets stride 2.
- ConvPool-CNN: an extra 3x3 conv, same channels, before each max-pool (the control that
  has All-CNN's parameter count but keeps pooling). The appendix tables use 3x3 for A and B
  too, not the preceding 5x5: that is what makes ConvPool and All-CNN the same size.
- All-CNN: each max-pool replaced by a 3x3 stride-2 conv with the same channels. (Appendix
  Tables 3-5 print "96" for the second one, a typo: it has the 192 channels it replaces.)
Padding is "same" everywhere except the 3x3 conv after the second pooling stage, which is
"valid": 32 -> 16 -> 8 -> 6, the papers' "global averaging over 6x6 spatial dimensions".
`padding=n` instead pads every conv larger than 1x1 by n pixels, as seed 001's reproduction
states ("Convolutional layers with a filter size larger than 1 have a padding of 1", §2.2):
Model A 32 -> 30 -> 15 -> 13 -> 7 -> 7, Model C 32 -> 16 -> 8 -> 8. The pools keep theirs.
Every conv, the class conv included, is conv -> [BN] -> activation ("1x1 conv. 10 ReLU").
Dropout: `input_dropout` on the input (paper: 20%), `dropout` after each pooling stage or the
layer that replaces it (paper: 50%).

Parameter counts (10 classes, no BN, width 1, with biases) follow the layer tables:
model_a 839,242, model_b 885,610, model_c 954,730, allcnn_a 1,254,250, allcnn_b 1,300,618,
allcnn_c 1,369,738; strided_* equal model_*, convpool_* equal allcnn_*. The papers' own
approximate counts (`PAPER_PARAMS`) disagree with their tables for B (~1 M) and C (~1.3 M).
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.models.layers import ActLayer, NormLayer, conv_norm_act, scale_channels
from trainers.models.registry import preset

CLASSES = "classes"  # the class conv's channels: num_classes, never scaled by width
# Rows: ("conv", channels, kernel, stride, padding "same"|"valid"|pixels), ("maxpool",
# kernel, stride), ("dropout", "input"|"stage") -> input_dropout | dropout.
POOL = ("maxpool", 3, 2)  # 3x3 max-pooling stride 2, as in every table
BASE: dict[str, list[tuple]] = {
    "a": [
        ("conv", 96, 5, 1, "same"),
        POOL,
        ("dropout", "stage"),
        ("conv", 192, 5, 1, "same"),
        POOL,
        ("dropout", "stage"),
    ],
    "b": [
        ("conv", 96, 5, 1, "same"),
        ("conv", 96, 1, 1, "same"),
        POOL,
        ("dropout", "stage"),
        ("conv", 192, 5, 1, "same"),
        ("conv", 192, 1, 1, "same"),
        POOL,
        ("dropout", "stage"),
    ],
    "c": [
        ("conv", 96, 3, 1, "same"),
        ("conv", 96, 3, 1, "same"),
        POOL,
        ("dropout", "stage"),
        ("conv", 192, 3, 1, "same"),
        ("conv", 192, 3, 1, "same"),
        POOL,
        ("dropout", "stage"),
    ],
}
TOP = [("conv", 192, 3, 1, "valid"), ("conv", 192, 1, 1, "same"), ("conv", CLASSES, 1, 1, "same")]

# The papers' stated approximate sizes (seed 001 Table 1, seed 002), for `grid models`.
PAPER_PARAMS: dict[str, int] = {
    "model_a": 900_000,
    "strided_a": 900_000,
    "convpool_a": 1_280_000,
    "allcnn_a": 1_280_000,
    "model_b": 1_000_000,
    "strided_b": 1_000_000,
    "convpool_b": 1_350_000,
    "allcnn_b": 1_350_000,
    "model_c": 1_300_000,
    "strided_c": 1_300_000,
    "convpool_c": 1_400_000,
    "allcnn_c": 1_400_000,
}


def _variant(base: list[tuple], kind: str) -> list[tuple]:
    """Rewrite each max-pool of `base` the way the variant `kind` does."""
    out: list[tuple] = []
    for row in base:
        if row[0] != "maxpool" or kind == "model":
            out.append(row)
            continue
        _, channels, kernel, _, padding = out[-1]
        if kind == "strided":
            out[-1] = ("conv", channels, kernel, 2, padding)
        elif kind == "convpool":
            out += [("conv", channels, 3, 1, "same"), row]
        else:  # allcnn
            out.append(("conv", channels, 3, 2, "same"))
    return out


# Every model's full layer table, e.g. TABLES["allcnn_c"], input dropout first.
TABLES: dict[str, list[tuple]] = {
    f"{kind}_{letter}": [("dropout", "input")] + _variant(rows, kind) + TOP
    for kind in ("model", "strided", "convpool", "allcnn")
    for letter, rows in BASE.items()
}


def pixels(kernel: int, padding: str | int) -> int:
    """A conv row's padding in pixels: "same" keeps the side (at stride 1), "valid" none."""
    if isinstance(padding, int):
        return padding
    return kernel // 2 if padding == "same" else 0


def padded(table: list[tuple], padding: str | int) -> list[tuple]:
    """`table` as built with `padding`: "same" is the table as written; n pads every conv
    larger than 1x1 by n pixels."""
    if padding == "same":
        return table
    return [(*row[:4], padding) if row[0] == "conv" and row[2] > 1 else row for row in table]


def spatial_size(table: list[tuple], size: int = 32) -> int:
    """The side of the feature map after `table`'s convs and pools, from a `size` input."""
    for row in table:
        if row[0] == "conv":
            _, _, kernel, stride, padding = row
            size = (size + 2 * pixels(kernel, padding) - kernel) // stride + 1
        elif row[0] in ("maxpool", "avgpool"):
            size = (size + 2 * (row[1] // 2) - row[1]) // row[2] + 1
    return size


def fc_head(table: list[tuple]) -> list[tuple]:
    """`table` with its trailing 1x1 convs as fully connected layers (seed 002's "fully
    connected layers instead of 1-by-1 convolutions"): the first becomes a conv as large as
    the feature map ("valid": a dense layer on the flattened map), the rest act on its 1x1
    output, which is what a dense layer is."""
    n = len(table)
    while n and table[n - 1][0] == "conv" and table[n - 1][2] == 1:
        n -= 1
    body, top = table[:n], table[n:]
    if not top:
        return table
    side = spatial_size(body)
    first = ("conv", top[0][1], side, 1, "valid")
    return body + [first] + [("conv", row[1], 1, 1, "valid") for row in top[1:]]


class AllCNN(nn.Module):
    """A plain conv net built from a layer table, then global average pooling: the class
    conv's channel means are the logits. `head="fc"`: the trailing 1x1 convs become fully
    connected layers (`fc_head`). `padding`: "same" builds the table as written, n pads
    every conv larger than 1x1 by n pixels (`padded`)."""

    def __init__(
        self,
        table: list[tuple],
        *,
        num_classes: int = 10,
        act_layer: ActLayer,
        norm_layer: NormLayer = None,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        width: float = 1.0,
        head: str = "conv",
        padding: str | int = "same",
    ):
        super().__init__()
        table = padded(table, padding)
        if head == "fc":
            table = fc_head(table)
        rates = {"input": input_dropout, "stage": dropout}
        layers: list[nn.Module] = []
        c_in = 3
        for row in table:
            if row[0] == "conv":
                _, c, kernel, stride, padding = row
                c_out = num_classes if c == CLASSES else scale_channels(c, width)
                layers.append(
                    conv_norm_act(
                        c_in,
                        c_out,
                        kernel,
                        stride,
                        pixels(kernel, padding),
                        act_layer=act_layer,
                        norm_layer=norm_layer,
                    )
                )
                c_in = c_out
            elif row[0] in ("maxpool", "avgpool"):
                pool = nn.MaxPool2d if row[0] == "maxpool" else nn.AvgPool2d
                layers.append(pool(row[1], row[2], padding=row[1] // 2))
            elif row[0] == "dropout" and rates[row[1]] > 0:
                layers.append(nn.Dropout(rates[row[1]]))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


for _name in TABLES:
    preset(_name, AllCNN, TABLES[_name])
