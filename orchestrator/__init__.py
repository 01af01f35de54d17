"""grid's orchestrator, by concept:

- `spec/`: the spec language (load, check, expand into cells, keys);
- `halving/`: successive halving (the section, the rule, the Tune scheduler);
- `stages/`: grids whose cells start from another grid's cells;
- `planning/`: cost, estimates, resources and the checks before a launch;
- `execution/`: running the cells on Ray Tune (the only package that imports Ray);
- `cli/`: the `grid` command.
"""
