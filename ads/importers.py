"""Importers (being written)."""

from __future__ import annotations


def import_ipinyou(data_dir, options):
    raise NotImplementedError
