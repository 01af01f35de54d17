"""Figures: `grid plot`'s figures of each table (`plots.py`), learning curves as small
multiples (`panels.py`), and the look every figure shares (`style.py`).
"""
