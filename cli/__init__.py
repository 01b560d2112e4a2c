"""The `mlops` command: thin commands over data, training, deploy and bentos; imported by nothing."""
