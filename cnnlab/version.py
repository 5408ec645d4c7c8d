"""The cnnlab version, saved in every checkpoint and printed by ``cnnlab --version``."""

__version__ = "0.1.0"
