"""Planning: what a launch will cost (`cost.py`), which of its units start first
(`order.py`), how long its cells take on this machine (`estimate.py`, `grid plan
--estimate`), what one trial asks Ray for (`resources.py`), and the checks of the cells
against the devices before any trial starts (`preflight.py`).
"""
