"""onlyif: instruction diversity for instruction tuning (arXiv 2410.04717) on Ray."""

__version__ = "0.1.0"
