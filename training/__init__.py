"""Training: targets, walk-forward evaluation, fitting, the model store and the Prefect flows."""
