"""The six trainers, one module each, and what only they share (the trainer base class, LightGBM parameters)."""
