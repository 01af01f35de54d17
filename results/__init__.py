"""grid's results: the Parquet store, aggregation, tables and plots."""
