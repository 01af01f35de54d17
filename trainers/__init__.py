"""grid's trainers: models, inits, activations, the GPU-resident data pipeline and the loop."""
