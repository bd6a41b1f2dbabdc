"""Duckline: a self-hosted platform for running a virtual SIM service."""

__version__ = "0.1.0"
