"""Structured losses: Fenchel-Young, SPO+, structured SVM, imitation, regret, contrastive."""

__all__: list[str] = []
