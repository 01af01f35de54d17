# ruff: noqa: E501 - a table of quotes: each stays on one line, as the report prints it
"""Every shipped grid runs the fields its report states: one row per (grid, field), with the
quote it comes from (seed and section). A row's `where` narrows it to the cells it is about
(None: every cell of the grid). Values the reports leave open are marked as ours in the grids
and in docs/grids.md, and are not asserted here; values a report implies are, with the
implication in the quote.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.spec.expand import expand
from orchestrator.spec.load import load_spec
from trainers.config import get_path

GRIDS_DIR = Path(__file__).parents[1] / "grids"
NO_REPORT = {"quickstart.yaml": "no paper: a laptop-sized demo on synthetic data"}

S000, S001, S002, S003, S004 = "seeds/000", "seeds/001", "seeds/002", "seeds/003", "seeds/004"

# seeds/000 (Wechsler et al.): the 100-epoch "our model", Keras-style decay.
_000_MODEL = [
    ("train.batch_size", 32, f"{S000} §3: 'We used a batch size of 32 epochs for all our tests'"),
    (
        "model.input_dropout",
        0.0,
        f"{S000} Table 2: 'The 20% dropout after the input layer is omitted in our model'",
    ),
    (
        "model.init",
        "xavier_uniform",
        f"{S000} §3: 'we use Xavier initialization without batch normalization'",
    ),
    (
        "train.optimizer.weight_decay",
        0.0,
        f"{S000} §4: 'Decay rate varies per iteration' (Keras lr decay, no L2 penalty)",
    ),
    (
        "dataset.preprocess",
        "stretch",
        f"{S000} §2.1: 2nd/98th percentile contrast normalization; §3: ZCA 'omitted from our experiments'",
    ),
    (
        "dataset.crop_padding",
        5,
        f"{S000} §2.1: 'applying a 5px random translation in all directions'",
    ),
    (
        "dataset.augment",
        ["crop", "flip"],
        f"{S000} §2.1: 'randomly horizontally flipping images and applying a 5px random translation'",
    ),
    (
        "dataset.val_size",
        0,
        f"{S000} §4: 'final test accuracies' and 'final validation losses' of the same runs (implied: validation = test set)",
    ),
]
# seeds/000's All-CNN-C run as the report ran Springenberg's recipe (350 epochs).
_000_ALLCNN = [
    ("train.epochs", 350, f"{S000} §3: 'we trained for 350 epochs'"),
    ("train.batch_size", 64, f"{S000} §3: 'we used a batch size of 64'"),
    (
        "train.schedule.milestones",
        [200, 250, 300],
        f"{S000} §2.1: 'first 200 epochs with the initial learning rate, and then decrease the rate after every 50 epochs'",
    ),
    ("train.schedule.gamma", 0.1, f"{S000} §2.1: 'decreases by a factor of 0.1'"),
    (
        "train.schedule.decay",
        0.001,
        f"{S000} §4: 'would have performed much better with a smaller decay rate. Decay rate varies per iteration'; §2.1 'decay of 0.001'",
    ),
    (
        "train.optimizer.weight_decay",
        0.0,
        f"{S000} §4: the 0.001 is 'the decay rate used by Springenberg et al.', an lr decay",
    ),
    ("train.optimizer.momentum", 0.9, f"{S000} §2.1: 'a momentum of 0.9'"),
    (
        "model.input_dropout",
        0.2,
        f"{S000} Table 2: the 20% input dropout is omitted only 'in our model'",
    ),
    ("dataset.val_size", 0, f"{S000} §4 (implied: validation = test set)"),
]
# seeds/001 (Lee et al.), section 2.2's list.
_001 = [
    ("train.batch_size", 200, f"{S001} §2.2: 'Batch size is 200'"),
    (
        "train.optimizer.momentum",
        0.9,
        f"{S001} §2.2: 'stochastic gradient descent with momentum of 0.9'",
    ),
    ("train.optimizer.weight_decay", 0.001, f"{S001} §2.2: 'Weight decay with lambda = 0.001'"),
    (
        "train.optimizer.decay_norm_bias",
        False,
        f"{S001} §2.2: 'Lasagne ... was used': its regularization penalises the W tagged regularizable, never b",
    ),
    (
        "train.schedule.milestones",
        [200, 250, 300],
        f"{S001} §2.2: 'multiplying it by 0.1 after epochs 200, 250, 300'",
    ),
    ("train.schedule.gamma", 0.1, f"{S001} §2.2: 'multiplying it by 0.1'"),
    ("train.epochs", 350, f"{S001} §2.2: 'training was stopped after 350 epochs'"),
    ("model.input_dropout", 0.2, f"{S001} §2.2: 'Dropout of 20% was added after the input layer'"),
    (
        "model.dropout",
        0.5,
        f"{S001} §2.2: '50% after a max-pooling layer or its corresponding convolutional layer with stride 2'",
    ),
    ("dataset.val_size", 0, f"{S001} §2.2: 'we did not include a validation set'"),
    ("dataset.augment", [], f"{S001} Table 2 reproduces the paper's no-augmentation table"),
    (
        "model.padding",
        1,
        f"{S001} §2.2: 'Convolutional layers with a filter size larger than 1 have a padding of 1'",
    ),
]
# seeds/002 (Xin Wang), section 1.
_002 = [
    (
        "dataset.val_size",
        1000,
        f"{S002} §1.1: '49000 for training,1000 for validation and 10000 for test'",
    ),
    (
        "train.batch_size",
        64,
        f"{S002} appendix log: checks every 100 iterations up to 'Iteration 700' (implied: 49,000 / 64 = 766 per epoch)",
    ),
    (
        "train.optimizer.momentum",
        0.9,
        f"{S002} §1.2: 'stochastic gradient descent with fixed momentum of 0.9'",
    ),
    ("train.optimizer.weight_decay", 0.001, f"{S002} §1.2: 'weight decay of 0.001'"),
    (
        "train.schedule.milestones",
        [200, 250, 300],
        f"{S002} §1.2: 'multiply 0.1 after 200,250 and 300 epochs'",
    ),
    ("model.input_dropout", 0.2, f"{S002} §1.2: 'dropout layer to the input with 20% dropping'"),
    ("model.dropout", 0.5, f"{S002} §1.2: '50% dropping after for each pooling layer'"),
    ("model.batch_norm", False, f"{S002} §1.3: 'according to the request, I didn't use it'"),
    ("model.init", "xavier_uniform", f"{S002} §1.1: 'some use Xavier uniform'"),
    (
        "dataset.augment",
        ["flip", "resized_crop"],
        f"{S002} §1.1: 'data augmentation: random resize and random horizontal'",
    ),
    (
        "train.lr",
        0.01,
        f"{S002} §1.2: 'the learning rate of 0.01 is the best, and I fixed it for the following models'",
    ),
]
# seeds/003 (Shen Jianzhi).
_003_SPLIT = [
    (
        "dataset.val_size",
        0,
        f"{S003} §3: 'It contains 50,000 in training set and 10,000 in test set' (implied: no validation split)",
    ),
]
_003_BN = [
    (
        "model.batch_norm",
        True,
        f"{S003} §4.6: batch-normalization, used by every model of §5 and §6",
    ),
    ("model.dropout", 0.0, f"{S003} §4.7: 'the optimal dropout rate is no dropout'"),
    *_003_SPLIT,
]
# seeds/004 (NIN lab), "Training hyperparameters".
_004 = [
    ("train.optimizer.name", "sgd", f"{S004} hyperparameters: 'SGD with Nesterov momentum'"),
    ("train.optimizer.momentum", 0.9, f"{S004} hyperparameters: 'momentum=0.9, nesterov=True'"),
    ("train.optimizer.nesterov", True, f"{S004} hyperparameters: 'nesterov=True'"),
    (
        "train.batch_size",
        128,
        f"{S004} hyperparameters: 'batch size: 128 (391 iterations for each epoch)'",
    ),
    (
        "dataset.val_size",
        0,
        f"{S004} hyperparameters: '391 iterations for each epoch' x 128 = all 50,000 (implied)",
    ),
    ("train.epochs", 164, f"{S004} hyperparameters: 'Total epochs: 164'"),
    ("train.lr", 0.1, f"{S004} hyperparameters: 'Initial learning rate: 0.1'"),
    (
        "train.schedule.milestones",
        [81, 122],
        f"{S004} hyperparameters: 'divide by 10 at 81, 122 epoch'",
    ),
    ("train.schedule.gamma", 0.1, f"{S004} hyperparameters: 'divide by 10'"),
    (
        "train.optimizer.weight_decay",
        0.0002,
        f"{S004} hyperparameters: 'kernel_regularizer=keras.regularizers.l2(0.0001)' (gradient 2e-4 w)",
    ),
    (
        "train.optimizer.decay_norm_bias",
        False,
        f"{S004} hyperparameters: 'kernel_regularizer' (Keras: kernels only)",
    ),
    ("model.dropout", 0.5, f"{S004} hyperparameters: 'Dropout: 0.5'"),
    ("model.input_dropout", 0.0, f"{S004} Table 1: no dropout before Conv 1"),
    (
        "dataset.augment",
        ["crop", "flip"],
        f"{S004} augmentation: 'Pad 4 zeros in each side and random cropping'; 'Horizontal flipping'",
    ),
    ("dataset.crop_padding", 4, f"{S004} augmentation: 'Pad 4 zeros in each side'"),
    (
        "dataset.preprocess",
        "standardize",
        f"{S004} hyperparameters: 'Data preprocessing: Color normalization'",
    ),
    (
        "model.bn_momentum",
        0.01,
        f"{S004} 'I used Keras': BatchNormalization(momentum=0.99) is torch momentum 0.01",
    ),
    ("model.bn_eps", 0.001, f"{S004} 'I used Keras': BatchNormalization(epsilon=1e-3)"),
]


def _rows(grid: str, fields: list, where: dict | None = None) -> list:
    return [(grid, where, path, value, quote) for path, value, quote in fields]


FIELDS = [
    # seeds/000
    *_rows("allcnn_init_bn.yaml", [f for f in _000_MODEL if f[0] != "model.init"]),
    ("allcnn_init_bn.yaml", None, "train.epochs", 100, f"{S000} §3: 'we tested over 100 epochs'"),
    (
        "allcnn_init_bn.yaml",
        {"train.lr": 0.01},
        "train.schedule.decay",
        1e-6,
        f"{S000} §3: 'a learning rate of 0.01 and decay of 1e-6'",
    ),
    (
        "allcnn_init_bn.yaml",
        {"train.lr": 0.015},
        "train.schedule.decay",
        3e-5,
        f"{S000} Fig. 6: 'learning rate 0.015, decay rate 3e-5'",
    ),
    (
        "allcnn_init_bn.yaml",
        None,
        "train.schedule.name",
        "decay",
        f"{S000} §4: 'Decay rate varies per iteration'",
    ),
    (
        "allcnn_init_bn.yaml",
        {"model.batch_norm": True},
        "model.init",
        "xavier_uniform",
        f"{S000} Table 3: 'Xavier w/ batch norm'",
    ),
    *_rows("allcnn_lr_search.yaml", _000_MODEL),
    (
        "allcnn_lr_search.yaml",
        None,
        "train.epochs",
        20,
        f"{S000} §3: 'from 0.005 to 0.1, using 20 epochs per run'",
    ),
    (
        "allcnn_lr_search.yaml",
        None,
        "train.schedule.decay",
        1e-5,
        f"{S000} §3: 'we kept the decay rate fixed at 1e-5'",
    ),
    (
        "allcnn_lr_search.yaml",
        None,
        "train.schedule.name",
        "decay",
        f"{S000} §4: 'Decay rate varies per iteration'",
    ),
    *_rows("allcnn_decay.yaml", _000_MODEL, {"train.epochs": 100}),
    (
        "allcnn_decay.yaml",
        {"train.epochs": 100},
        "train.schedule.name",
        "decay",
        f"{S000} §3: 'searched for the decay rate from 1e0 to 1e-9, using 100 epochs per run'",
    ),
    *_rows("allcnn_decay.yaml", _000_ALLCNN, {"train.epochs": 350}),
    (
        "allcnn_decay.yaml",
        {"train.epochs": 350},
        "train.lr",
        0.05,
        f"{S000} §4: 'got 84.7% with a learning rate of 0.05'",
    ),
    *_rows("allcnn_zca_dropout.yaml", _000_ALLCNN[:-2]),
    (
        "allcnn_zca_dropout.yaml",
        None,
        "train.lr",
        0.05,
        f"{S000} §4: 'a larger learning rate (0.05) performs better'",
    ),
    # seeds/001
    *_rows("allcnn_lee.yaml", _001),
    (
        "allcnn_lee.yaml",
        {"model.arch": "allcnn_a"},
        "train.lr",
        0.01,
        f"{S001} Table 2: 'ALL-CNN-A 12.47% ... 0.01'",
    ),
    (
        "allcnn_lee.yaml",
        {"model.arch": "model_a"},
        "train.lr",
        0.05,
        f"{S001} Table 2: 'Model A 15.16% ... 0.05'",
    ),
    (
        "allcnn_lee.yaml",
        None,
        "dataset.preprocess",
        "gcn_zca",
        f"{S001} §2.2: 'whitening and global contrast normalization ... make_cifar10_gcn_whitened.py'",
    ),
    *_rows("allcnn_preproc.yaml", _001),
    ("allcnn_preproc.yaml", None, "train.lr", 0.05, f"{S001} Table 2: 'Model A 15.16% ... 0.05'"),
    *_rows("allcnn_filters.yaml", _001),
    (
        "allcnn_filters.yaml",
        None,
        "train.lr",
        0.05,
        f"{S001} Table 2: 'ALL-CNN-C 11.17% ... 0.05', 'Model C 11.11% ... 0.05'",
    ),
    # Springenberg's Table 3 as the reports quote it (batch, init and split are ours).
    (
        "allcnn_table.yaml",
        None,
        "train.optimizer.momentum",
        0.9,
        f"{S000} §2.1: 'stochastic gradient descent and a momentum of 0.9'",
    ),
    (
        "allcnn_table.yaml",
        None,
        "train.optimizer.weight_decay",
        0.001,
        f"{S000} §2.1: 'A weight decay of 0.001 was also applied'",
    ),
    (
        "allcnn_table.yaml",
        None,
        "train.schedule.milestones",
        [200, 250, 300],
        f"{S000} §2.1: 'first 200 epochs ... then ... after every 50 epochs for a total of 350'",
    ),
    ("allcnn_table.yaml", None, "train.epochs", 350, f"{S000} §2.1: 'for a total of 350 epochs'"),
    (
        "allcnn_table.yaml",
        None,
        "model.input_dropout",
        0.2,
        f"{S000} Table 2: '20% dropout' after the input",
    ),
    (
        "allcnn_table.yaml",
        None,
        "model.dropout",
        0.5,
        f"{S000} Table 2: '50% dropout' after each stride-2 stage",
    ),
    (
        "allcnn_table.yaml",
        None,
        "dataset.augment",
        [],
        f"{S001} Table 1: 'Original Classification Error' (the no-augmentation table; {S000} §1: '9.08% error rate without data augmentation')",
    ),
    (
        "allcnn_table.yaml",
        None,
        "dataset.preprocess",
        "gcn_zca",
        f"{S000} §2.1: 'Images were also whitened and contrast normalized'",
    ),
    # seeds/002
    *_rows("allcnn_variants.yaml", _002),
    (
        "allcnn_variants.yaml",
        {"model.arch": "allcnn_c"},
        "train.epochs",
        20,
        f"{S002} §1.3: 'the rest only run for 20 epochs'",
    ),
    (
        "allcnn_variants.yaml",
        {"model.arch": "model_a"},
        "train.epochs",
        350,
        f"{S002} §1.3: 'base A and Base B run the entire 350 epochs'",
    ),
    *_rows("allcnn_lr_pick.yaml", [f for f in _002 if f[0] != "train.lr"]),
    (
        "allcnn_lr_pick.yaml",
        None,
        "model.arch",
        "model_a",
        f"{S002} §1.2: 'For model A, I obey the paper and set a loop to find the best learning rate'",
    ),
    (
        "allcnn_lr_pick.yaml",
        None,
        "train.epochs",
        350,
        f"{S002} §1.3: 'base A and Base B run the entire 350 epochs'",
    ),
    *_rows("allcnn_fc_head.yaml", _002),
    *_rows("allcnn_augment.yaml", [f for f in _002 if f[0] != "dataset.augment"]),
    (
        "allcnn_augment.yaml",
        {"dataset.augment": ["flip", "resized_crop"]},
        "dataset.augment",
        ["flip", "resized_crop"],
        f"{S002} §1.1: 'random resize and random horizontal' (the section-1 cell)",
    ),
    (
        "allcnn_augment.yaml",
        {"model.arch": "allcnn_c"},
        "model.arch",
        "allcnn_c",
        f"{S002} §1.4: 'After data augmentation with flip, random crop, color jittering, shift, scale' (no model named: the ALL-C that §2 pretrains, ours)",
    ),
    *_rows(
        "allcnn_transfer_vehicles.yaml",
        [f for f in _002 if f[0] not in ("dataset.val_size", "train.batch_size")],
    ),
    *_rows(
        "allcnn_transfer_animals.yaml",
        [f for f in _002 if f[0] not in ("dataset.val_size", "train.batch_size")],
    ),
    *_rows(
        "allcnn_transfer_variants.yaml",
        [f for f in _002 if f[0] not in ("dataset.val_size", "train.batch_size")],
    ),
    (
        "allcnn_transfer_vehicles.yaml",
        None,
        "dataset.name",
        "cifar100",
        f"{S002} §2: 'Transfer learning on the two subsets of CIFAR-100'",
    ),
    (
        "allcnn_transfer_animals.yaml",
        None,
        "dataset.name",
        "cifar100",
        f"{S002} §2: 'Transfer learning on the two subsets of CIFAR-100'",
    ),
    (
        "allcnn_transfer_variants.yaml",
        None,
        "dataset.name",
        "cifar100",
        f"{S002} §2: 'Transfer learning on the two subsets of CIFAR-100'",
    ),
    # seeds/003
    *_rows("onecycle.yaml", _003_BN),
    (
        "onecycle.yaml",
        None,
        "model.arch",
        "resnet9",
        f"{S003} §5.3: 'ResNet 9 can converge to 91% accuracy'",
    ),
    ("onecycle.yaml", None, "train.epochs", 12, f"{S003} §2: '0.92 in 0:02:27 (12 epochs)'"),
    (
        "onecycle.yaml",
        None,
        "train.optimizer.name",
        "adam",
        f"{S003} §5.3: 'This learning rate scheduler works extremely well with Adam'",
    ),
    (
        "onecycle.yaml",
        None,
        "train.schedule.name",
        "onecycle",
        f"{S003} §2: 'using cycle learning rate'",
    ),
    (
        "onecycle.yaml",
        {"train.schedule.three_phase": True},
        "train.schedule.three_phase",
        True,
        f"{S003} §5.3: 'One Cycle Learning Rate has three phases'",
    ),
    *_rows("resnet9_pool_first.yaml", _003_BN),
    (
        "resnet9_pool_first.yaml",
        None,
        "train.epochs",
        10,
        f"{S003} §5.2: 'the training of 10 epochs'",
    ),
    (
        "resnet9_pool_first.yaml",
        None,
        "train.optimizer.name",
        "adam",
        f"{S003} §5.3: '91% accuracy in merely 10 epochs' with a scheduler that 'works extremely well with Adam'",
    ),
    (
        "resnet9_pool_first.yaml",
        None,
        "train.schedule.three_phase",
        True,
        f"{S003} §5.3: 'three phases'",
    ),
    *_rows("resnet_fast.yaml", _003_BN[:2]),  # its validation split is ours: it picks the lr
    ("resnet_fast.yaml", None, "train.epochs", 12, f"{S003} §2: '(12 epochs)'"),
    (
        "resnet_fast.yaml",
        None,
        "train.schedule.name",
        "onecycle",
        f"{S003} §2: 'using cycle learning rate'",
    ),
    *_rows("resnet12_ranger.yaml", _003_BN),
    (
        "resnet12_ranger.yaml",
        None,
        "train.epochs",
        80,
        f"{S003} §2: '0.9489 in 80 epochs, 12 layers'",
    ),
    (
        "resnet12_ranger.yaml",
        None,
        "train.optimizer.name",
        "ranger",
        f"{S003} §2: 'Ranger optimizer'",
    ),
    (
        "resnet12_ranger.yaml",
        {"dataset.augment": ["crop", "cutout", "flip"]},
        "train.label_smoothing",
        0.1,
        f"{S003} §2: 'using Cutout, label smoothing loss and Ranger optimizer'",
    ),
    *_rows("regularisation.yaml", _003_BN),
    (
        "regularisation.yaml",
        None,
        "train.optimizer.name",
        "ranger",
        f"{S003} §2: the 12-layer net's 'Ranger optimizer' (our placement of §4.10)",
    ),
    *_rows("resnet18_best.yaml", _003_BN),
    (
        "resnet18_best.yaml",
        None,
        "model.arch",
        "resnet18",
        f"{S003} §2: '0.9565 in 150 epochs, 18 layers, 11,173,962 parameters'",
    ),
    ("resnet18_best.yaml", None, "train.epochs", 150, f"{S003} §2: 'in 150 epochs'"),
    (
        "resnet18_best.yaml",
        None,
        "train.optimizer.name",
        "adam",
        f"{S003} §6.2: '75 epochs of Consine Annealing Warmup Learning Rate Adam first'",
    ),
    (
        "resnet18_best.yaml",
        None,
        "train.optimizer_switch.epoch",
        75,
        f"{S003} §6.2: 'and then 75 epochs of Consine Annealing Learning Rate SGD'",
    ),
    (
        "resnet18_best.yaml",
        None,
        "train.optimizer_switch.name",
        "sgd",
        f"{S003} §6.2: '75 epochs of ... SGD'",
    ),
    (
        "resnet18_best.yaml",
        None,
        "train.schedule.name",
        "cosine",
        f"{S003} §6.2: 'Cosine Annealing Warmup Learning Rate'",
    ),
    (
        "resnet18_best.yaml",
        None,
        "model.downsample",
        "maxpool",
        f"{S003} §2: 'improved downsampling block'",
    ),
    (
        "resnet18_best.yaml",
        {"model.activation": "mish"},
        "model.activation",
        "mish",
        f"{S003} §2: 'Mish activation'",
    ),
    (
        "resnet18_best.yaml",
        None,
        "train.label_smoothing",
        0.1,
        f"{S003} §2: 'label smoothing loss' (epsilon ours)",
    ),
    (
        "resnet18_best.yaml",
        None,
        "dataset.augment",
        ["crop", "cutout", "flip"],
        f"{S003} §2: 'using Cutout'; §4.10 'Random crop and horizontal flip'",
    ),
    *_rows("resnet_downsample.yaml", _003_BN),
    (
        "resnet_downsample.yaml",
        None,
        "train.epochs",
        150,
        f"{S003} §6.1: ResNet18 'from 0.9523 to 0.9565', the 150-epoch model of §2",
    ),
    *_rows("resnet_blocks.yaml", _003_BN),
    (
        "resnet_blocks.yaml",
        None,
        "model.arch",
        "resnet18",
        f"{S003} §4.8: 'When testing them on the formal models' (our choice of ResNet-18)",
    ),
    *_rows("optimizers.yaml", _003_BN),
    (
        "optimizers.yaml",
        {"train.optimizer.name": "adadelta"},
        "train.optimizer.decay_norm_bias",
        False,
        f"{S003} §4.9: 'AdaDelta with weight decay that do not change bias'",
    ),
    (
        "densenet.yaml",
        None,
        "model.arch",
        "densenet59",
        f"{S003} §2: '0.9127 in 80 epochs, 59 ConvLayers, 614,850 parameters'",
    ),
    ("densenet.yaml", None, "train.epochs", 80, f"{S003} §2: 'in 80 epochs'"),
    *(
        (g, None, "dataset.val_size", 0, _003_SPLIT[0][2])
        for g in (
            "densenet.yaml",
            "toy_kernels.yaml",
            "toy_channels.yaml",
            "toy_activations.yaml",
            "toy_depth.yaml",
            "toy_deep_mish.yaml",
            "toy_dropout.yaml",
        )
    ),
    ("toy_kernels.yaml", None, "model.depth", 2, f"{S003} Fig. 1: 'a 2-ConvLayer CNN'"),
    ("toy_channels.yaml", None, "model.depth", 2, f"{S003} Fig. 3: 'a 2-ConvLayer CNN'"),
    ("toy_activations.yaml", None, "model.depth", 3, f"{S003} Fig. 6: 'a 3-ConvLayer CNN'"),
    (
        "toy_depth.yaml",
        {"model.batch_norm": True},
        "model.depth",
        5,
        f"{S003} §4.3: 'what hurdles the 5-ConvLayer toy net'; Fig. 7 'with BN'",
    ),
    (
        "toy_deep_mish.yaml",
        None,
        "train.lr",
        0.1,
        f"{S003} §4.5: '30, 40, 50 batch-normalized ConvLayers, 0.1 SGD'",
    ),
    (
        "toy_deep_mish.yaml",
        None,
        "model.batch_norm",
        True,
        f"{S003} §4.5: 'batch-normalized ConvLayers'",
    ),
    ("toy_deep_mish.yaml", None, "train.optimizer.name", "sgd", f"{S003} §4.5: '0.1 SGD'"),
    (
        "toy_dropout.yaml",
        None,
        "model.channels",
        [64, 128, 256, 512],
        f"{S003} §4.7: 'a 512-sized input features' to the FC layer",
    ),
    # seeds/004
    *_rows("nin_table.yaml", _004),
    (
        "nin_table.yaml",
        {"model.init": "he_normal"},
        "model.init",
        "he_normal",
        f"{S004} 'He's WI = normal(sqrt(2/n_l)), n_l = k^2 c' (fan-in)",
    ),
    (
        "nin_table.yaml",
        {"model.activation": "leaky_relu"},
        "model.batch_norm",
        True,
        f"{S004} requirements: '2(LReLU, Maxout) X 1(with BN) X 1(with weight initial)'",
    ),
]


def _cells(grid: str, where: dict | None) -> list[dict]:
    configs = [t.config for t in expand(load_spec(GRIDS_DIR / grid))]
    where = where or {}
    return [c for c in configs if all(get_path(c, k) == v for k, v in where.items())]


@pytest.mark.parametrize(
    ("grid", "where", "path", "value", "quote"),
    FIELDS,
    ids=[f"{g}:{p}{'@' + str(w) if w else ''}" for g, w, p, _, _ in FIELDS],
)
def test_grid_runs_the_stated_field(grid, where, path, value, quote):
    cells = _cells(grid, where)
    assert cells, f"{grid}: no cell matches {where} ({quote})"
    for cfg in cells:
        got = get_path(cfg, path)
        if isinstance(value, float):
            assert got == pytest.approx(value), f"{grid} {path}: {got!r}, the report: {quote}"
        else:
            assert got == value, f"{grid} {path}: {got!r}, the report: {quote}"


def test_every_shipped_grid_has_its_report_fields():
    covered = {g for g, *_ in FIELDS} | set(NO_REPORT)
    assert {p.name for p in GRIDS_DIR.glob("*.yaml")} == covered


def test_nin_table_has_three_seeds_per_row():
    seeds = {}
    for cfg in _cells("nin_table.yaml", None):
        m = cfg["model"]
        seeds.setdefault((m["activation"], m["batch_norm"], m["init"]), set()).add(
            cfg["train"]["seed"]
        )
    assert len(seeds) == 10 and all(s == {0, 1, 2} for s in seeds.values())


def _references(grid: str) -> list[tuple[tuple, float]]:
    spec = load_spec(GRIDS_DIR / grid)
    out = []
    for table in spec.tables:
        for ref in table.get("reference") or []:
            cells = [t for t in expand(spec) if _matches(t.config, ref["where"])]
            metric = (table.get("metric", "test_acc"), table.get("at", "final"))
            out += [((t.key, *metric), ref["value"]) for t in cells]
    return out


def _matches(cfg: dict, where: dict) -> bool:
    from trainers.config import canonical_path

    def norm(v):
        return sorted(v) if isinstance(v, list) else v

    return all(norm(get_path(cfg, canonical_path(k))) == norm(v) for k, v in where.items())


def test_a_published_number_sits_on_one_recipe_only():
    numbers: dict[str, set] = {}
    for path in sorted(GRIDS_DIR.glob("*.yaml")):
        for key, value in _references(path.name):
            numbers.setdefault(key, set()).add(value)
    # One cell may carry one number per metric (test and validation accuracy), not two
    # different numbers for the same metric.
    clash = {k: v for k, v in numbers.items() if len(v) > 1}
    assert not clash, f"cells with more than one published number: {clash}"


@pytest.mark.parametrize(
    ("grid", "settings"),
    [("nin_table.yaml", 10), ("allcnn_init_bn.yaml", 6), ("resnet9_pool_first.yaml", 2)],
)
def test_seeded_grids_have_three_seeds_and_a_one_seed_table(grid, settings):
    cells = expand(load_spec(GRIDS_DIR / grid))
    assert len(cells) == 3 * settings
    assert {c.config["train"]["seed"] for c in cells} == {0, 1, 2}
    one = expand(load_spec(GRIDS_DIR / grid, ["seed=[0]"]))
    assert len(one) == settings and {c.config["train"]["seed"] for c in one} == {0}
    assert {c.key for c in one} <= {c.key for c in cells}
