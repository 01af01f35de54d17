"""Network in Network (Lin et al., 2014) as in the NIN lab (seed 004, Table 1).

Three mlpconv blocks (a kxk conv then two 1x1 convs): 5x5 192 / 160 / 96, 5x5 192 / 192 /
192, 3x3 192 / 192 / classes, each conv -> [BN] -> activation. 3x3 stride-2 max pooling
("same" padding: 32 -> 16 -> 8) and dropout (`dropout`, 0.5 in the lab) after the first two
blocks, then the lab's "8x8 average pooling", i.e. a global average. Seed 004 max-pools
after both blocks; Lin et al.'s Caffe model average-pools after the second: change that
row to ("avgpool", 3, 2) for it. 966,986 parameters with 10 classes, no BN.
"""

from __future__ import annotations

from trainers.models.allcnn import CLASSES, AllCNN
from trainers.models.registry import preset

NIN_TABLE: list[tuple] = [
    ("dropout", "input"),
    ("conv", 192, 5, 1, "same"),
    ("conv", 160, 1, 1, "same"),
    ("conv", 96, 1, 1, "same"),
    ("maxpool", 3, 2),
    ("dropout", "stage"),
    ("conv", 192, 5, 1, "same"),
    ("conv", 192, 1, 1, "same"),
    ("conv", 192, 1, 1, "same"),
    ("maxpool", 3, 2),
    ("dropout", "stage"),
    ("conv", 192, 3, 1, "same"),
    ("conv", 192, 1, 1, "same"),
    ("conv", CLASSES, 1, 1, "same"),
]


nin = preset(
    "nin",
    AllCNN,
    NIN_TABLE,
    doc="NIN for CIFAR: the table above, built by the All-CNN table builder.",
)
