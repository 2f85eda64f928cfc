"""Importers (being written)."""

from __future__ import annotations


def import_homedepot(data_dir, options):
    raise NotImplementedError
