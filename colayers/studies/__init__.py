"""Comparative studies: benchmark problems, the study runner and reports."""

__all__: list[str] = []
