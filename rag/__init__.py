"""Clause-cited Q&A over the ETDZ work plan and related laws."""

__version__ = "0.1.0"
