"""Running a grid on Ray Tune. `launch.py` is `grid launch`: it picks the cells with no
result (`units.py`), joins or starts Ray (`session.py`), and runs one Tune experiment
(`experiment.py`) whose trials are reusable slots (`slot.py`, the `tune.Trainable`) that step
a unit's training (`trial.py`, no Ray) and keep its checkpoints (`checkpoints.py`).
`monitor.py` is what Ray's dashboard and Grafana show, `progress.py` the launch's own lines,
`submit.py` the Ray Jobs client, `raycompat.py` the tested Ray versions and every private Ray
API still used, and `hooks.py` the test hooks (inert unless a test arms them). Only this
package imports Ray.
"""
