"""The benchmark's baseline: the training pipeline the seed projects ran.

torchvision's CIFAR10 reading the files, PIL transforms (RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize), a DataLoader, `.to(device)` per batch, fp32,
cuDNN left untuned and `loss.item()` per step (a running loss to print). `grid bench`
times our trainer against it (`trainers.bench`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainers.models import create_model
from trainers.runtime import configure_cudnn

# The per-channel CIFAR-10 mean/std the seeds' torchvision pipelines normalise with.
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def seed_cifar10() -> type:
    """torchvision's CIFAR10 as the seeds used it, minus the md5s of the real files (ours
    are synthetic files in the same layout)."""
    from torchvision.datasets import CIFAR10

    return type(
        "SyntheticCIFAR10",
        (CIFAR10,),
        {
            "train_list": [[name, None] for name, _ in CIFAR10.train_list],
            "test_list": [[name, None] for name, _ in CIFAR10.test_list],
            "meta": {**CIFAR10.meta, "md5": None},
        },
    )


class Naive:
    """The seeds' pipeline: torchvision dataset + PIL transforms + DataLoader, fp32."""

    def __init__(self, cfg: dict, device: torch.device, workers: int):
        from torchvision import transforms

        tf = transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
            ]
        )
        dataset = seed_cifar10()(cfg["dataset"]["root"], train=True, transform=tf)
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=cfg["train"]["batch_size"],
            shuffle=True,
            num_workers=workers,
            drop_last=True,
        )
        m = cfg["model"]
        torch.manual_seed(0)
        self.model = create_model(
            m["arch"], width=m["width"], dropout=m["dropout"], input_dropout=m["input_dropout"]
        ).to(device)
        opt = cfg["train"]["optimizer"]
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=cfg["train"]["lr"],
            momentum=opt["momentum"],
            weight_decay=opt["weight_decay"],
        )
        self.device, self.batches = device, iter(self.loader)

    def _next(self):
        try:
            return next(self.batches)
        except StopIteration:  # a new epoch, as the seeds' `for epoch` loop starts one
            self.batches = iter(self.loader)
            return next(self.batches)

    def run(self, steps: int) -> int:
        configure_cudnn(self.device, benchmark=False)  # PyTorch's default, kept by the seeds
        self.model.train()
        running, seen = 0.0, 0
        for _ in range(steps):
            x, y = self._next()
            x, y = x.to(self.device), y.to(self.device)
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            running += loss.item()  # the seeds' running loss: a host sync every step
            seen += len(y)
        return seen
