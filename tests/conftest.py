"""Shared test settings.

One torch thread per test process: the tests train tiny models, where a second thread buys
nothing and, on a busy 2-core machine (or beside Ray workers), makes each op wait for a core.
"""
import torch

torch.set_num_threads(1)
