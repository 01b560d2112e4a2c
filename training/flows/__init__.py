"""The Prefect retrain flow: its tasks, the promotion gate, the training cache, the promotion lock, the summary."""
