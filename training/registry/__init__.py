"""The model store, the model cards, promotion and rollback."""
