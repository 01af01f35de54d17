"""The GRID_CHAOS barrier (orchestrator/execution/hooks.py) served by a test: every trial event is
recorded, and `act(event, key, epoch, pid)` runs while the trial waits for the answer (it
returns False when it killed the trial: no answer then)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class ChaosEvents:
    def __init__(self, path, act: Callable[[str, str, int, int], bool]):
        self.act, self.events = act, []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(8)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                event, key, epoch, pid = conn.makefile().readline().split()
                self.events.append((event, key, int(epoch)))
                if self.act(event, key, int(epoch), int(pid)):
                    conn.sendall(b"go\n")

    def close(self) -> None:
        self.server.close()
