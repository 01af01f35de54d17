"""The spec language: a grid's YAML loaded safely and checked (`load.py`), its `tables:`
section (`tables.py`), and its expansion into cells (`expand.py`), each with a stable key
(`keys.py`). No Ray, no torch: all of it runs before any trial starts.
"""
