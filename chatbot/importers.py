"""Importers (being written)."""

from __future__ import annotations


def import_banking77(data_dir, options):
    raise NotImplementedError
def import_clinc150(data_dir, options):
    raise NotImplementedError
