"""The live loop (issue 16): what the service answered, scored against what happened, and drift from training."""
