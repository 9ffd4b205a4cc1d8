"""HITA, the ITT Hotel API."""

__version__ = "0.1.0"
