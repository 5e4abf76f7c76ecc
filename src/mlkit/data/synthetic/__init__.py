"""Deterministic synthetic construction-site data: still scenes and a labelled video."""
