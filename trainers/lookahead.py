"""Lookahead (Zhang et al., 2019) around any optimizer: Ranger is RAdam inside it.

Every `k` steps of the inner (fast) optimizer, the slow weights move `alpha` of the way to
the fast ones and the fast weights restart from there. Written here (timm's `Lookahead` is
the same 30 lines) so the project does not take on timm and its model zoo for one wrapper.
The slow weights live in the inner optimizer's per-parameter state, so `state_dict` and
`load_state_dict` are the inner optimizer's and a checkpoint resumes them exactly.
"""

from __future__ import annotations

from collections import defaultdict

import torch

# Ranger's (Wright, 2019) and the Lookahead paper's defaults: k = 6 fast steps, alpha 0.5.
LOOKAHEAD_K = 6
LOOKAHEAD_ALPHA = 0.5


class Lookahead(torch.optim.Optimizer):
    """`base` stepped as usual; every `k`-th step, slow += alpha * (fast - slow), fast = slow.

    It shares `base.param_groups` (a schedule that sets the lr sets the inner one's)."""

    def __init__(
        self, base: torch.optim.Optimizer, alpha: float = LOOKAHEAD_ALPHA, k: int = LOOKAHEAD_K
    ):
        # Not Optimizer.__init__: the groups and the state are the inner optimizer's own.
        self.base = base
        self.param_groups = base.param_groups
        self.defaults = {**base.defaults, "lookahead_alpha": alpha, "lookahead_k": k}
        self.state = defaultdict(dict)
        self._optimizer_step_pre_hooks: dict = {}
        self._optimizer_step_post_hooks: dict = {}
        for group in self.param_groups:
            group.setdefault("lookahead_alpha", alpha)
            group.setdefault("lookahead_k", k)
            group.setdefault("lookahead_step", 0)

    @torch.no_grad()
    def _sync(self, group: dict) -> None:
        for fast in group["params"]:
            slow = self.base.state[fast].get("lookahead_slow")
            if slow is not None:
                slow.add_(fast - slow, alpha=group["lookahead_alpha"])
                fast.copy_(slow)

    @torch.no_grad()
    def step(self, closure=None):
        """One inner step, then the slow update on every `k`-th step of each group."""
        # The slow weights start as the weights before the first step (the paper's phi_0);
        # they join the inner state after its first step, which fills that state first.
        start = {
            p: p.detach().clone()
            for g in self.param_groups
            if g["lookahead_step"] == 0
            for p in g["params"]
            if "lookahead_slow" not in self.base.state[p]
        }
        loss = self.base.step(closure)
        for p, slow in start.items():
            self.base.state[p]["lookahead_slow"] = slow
        for group in self.param_groups:
            group["lookahead_step"] += 1
            if group["lookahead_step"] % group["lookahead_k"] == 0:
                self._sync(group)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
