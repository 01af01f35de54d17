"""grid's orchestrator: spec loading, expansion into trials, launching (Ray), CLI."""
