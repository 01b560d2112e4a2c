"""Market data: sources, validation at the edge and the immutable snapshot store."""
