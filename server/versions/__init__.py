"""Versions: the registry of model versions, the verified hot swap, promote and rollback."""
