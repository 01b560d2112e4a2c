"""The BentoML service and its model runners."""
