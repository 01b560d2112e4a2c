"""Walk-forward evaluation: splits, baselines, metrics, the leakage audit and the HTML report."""
