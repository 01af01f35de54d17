"""Stages: a grid whose cells start from another grid's trained cells (docs/spec.md#stage):
the spec's `stage:` section (`section.py`), each child cell's parent (`parents.py`), and
`grid launch` of a stage, its parents first (`launch.py`).
"""
