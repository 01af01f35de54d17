"""The GRID_CHAOS hook (orchestrator/execution/hooks.py) without Ray: inert unless armed, a no-op
when nobody listens, and a barrier that holds the trial until the campaign answers."""

from __future__ import annotations

import os
import threading

from orchestrator.execution import hooks
from tests.orchestrator.chaos_events import ChaosEvents


def test_unarmed_or_unheard_the_hook_does_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv(hooks.CHAOS_ENV, raising=False)
    hooks.at_epoch("abc", 1)
    hooks.committed("abc", 1)
    monkeypatch.setenv(hooks.CHAOS_ENV, str(tmp_path / "nobody.sock"))
    hooks.at_epoch("abc", 1)  # no campaign listening: the trial trains on
    hooks.committed("abc", 1)


def test_each_event_waits_for_the_campaigns_answer(monkeypatch, tmp_path):
    arrived, gate = threading.Event(), threading.Event()

    def hold(event: str, key: str, epoch: int, pid: int) -> bool:
        assert pid == os.getpid()
        arrived.set()
        return gate.wait(timeout=60)  # the campaign acts here while the trial waits

    events = ChaosEvents(tmp_path / "ev.sock", hold)
    monkeypatch.setenv(hooks.CHAOS_ENV, str(tmp_path / "ev.sock"))
    trial = threading.Thread(target=hooks.at_epoch, args=("abc", 2))
    trial.start()
    assert arrived.wait(timeout=60)
    assert trial.is_alive()  # held: the campaign has not answered
    gate.set()
    trial.join(timeout=60)
    assert not trial.is_alive()
    hooks.at_epoch("abc", 2, resumed=True)
    hooks.committed("abc", 3)
    events.close()
    assert events.events == [("epoch", "abc", 2), ("resume", "abc", 2), ("commit", "abc", 3)]
