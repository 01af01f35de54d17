"""`grid report`: one static HTML page per grid (`page.py`), its HTML shell (`html.py`),
its probe section (`probes.py`) and where its results came from (`provenance.py`).
"""
