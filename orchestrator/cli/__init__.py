"""The `grid` command: `main.py` parses and dispatches (`python -m orchestrator.cli`), the
read-only commands' own modules beside it (`status.py`, `plan.py`).
"""
