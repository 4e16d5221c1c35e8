"""Training engine: trainer, hooks for techniques, optimisation, AMP, checkpoints, evaluation,
logging and distributed helpers. Knows no technique by name."""
