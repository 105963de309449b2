"""proofwell's verification library: a pure library, no web and no database."""

__version__ = "0.1.0"
