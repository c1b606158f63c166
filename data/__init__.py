"""Embedded default configurations and small datasets (installed as package data)."""
