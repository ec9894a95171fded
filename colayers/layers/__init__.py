"""Estimators as layers: one distribution over solutions plus a vector-Jacobian-product rule."""

__all__: list[str] = []
