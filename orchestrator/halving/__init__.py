"""Successive halving, in one place: the spec's `halving:` section and its rungs
(`rule.py`), the synchronous rule's decisions without Ray (`sync.py`), and the rule as a Ray
Tune scheduler (`scheduler.py`).
"""
