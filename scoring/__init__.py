"""Batch scoring of a universe on Dask: partitions by symbol, the service's runners loaded once per worker."""
