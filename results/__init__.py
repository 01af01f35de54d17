"""grid's results: `store/` (rows, curves, checkpoints, the lease, on a folder or S3), and
what reads it for people: `tables/`, `figures/` and `report/`."""
