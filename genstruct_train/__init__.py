"""genstruct-train: train instruction synthesizers and synthesize, filter and evaluate instruction data."""

__version__ = "0.1.0"
