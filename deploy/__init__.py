"""Deployment: the Bento build, the OCI image and its base, the smoke test of a served Bento; imports only `bentos`."""
