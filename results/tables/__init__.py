"""Tables from the store's rows: the cells of a comparison table (`aggregate.py`), the
published numbers matched to them (`references.py`), what a halving stopped (`stops.py`),
`grid table` itself (`build.py`) and its text formats (`formats.py`).
"""
