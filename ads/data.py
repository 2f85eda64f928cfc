"""The rows a pCTR model reads, and their encoding as value indices.

A row is a dict ``field -> str`` (single-valued fields) or ``field -> list[str]`` (bag fields such
as genres or query words); :class:`CtrData` adds the click labels and, per text slot, an index into
a matrix of backbone text embeddings (slot 0: the ad creative; then context texts such as the query).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

UNKNOWN = 0  # index of unseen / rare values in every field vocabulary


@dataclass
class FieldSpec:
    """One input field: ``cat`` (one value per row), ``bag`` (a list of values per row), or ``cross``: the
    pairs ``x|y`` of the values of the two fields ``of`` (e.g. customer x genre), a bag of their own."""

    name: str
    kind: str = "cat"
    max_len: int = 8
    of: tuple[str, str] | list[str] | None = None

    @property
    def is_bag(self) -> bool:
        return self.kind in ("bag", "cross")


def as_list(value: Any) -> list[str]:
    """A field's value as a list: a bag as it is, one value as [value], nothing as []."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value is None or value == "" else [value]


def field_values(row: dict[str, Any], spec: FieldSpec) -> list[str]:
    """The values of ``spec`` in one row (a cross's are built from its two fields)."""
    if spec.kind == "cross":
        a, b = spec.of
        return [f"{x}|{y}" for x in as_list(row.get(a)) for y in as_list(row.get(b))]
    return as_list(row.get(spec.name)) if spec.is_bag else [row.get(spec.name)]


class Vocabulary:
    """Value -> index per field; values seen fewer than ``min_count`` times map to UNKNOWN."""

    def __init__(self, fields: Sequence[FieldSpec], index: dict[str, dict[str, int]] | None = None):
        self.fields = list(fields)
        self.index = index or {f.name: {} for f in self.fields}

    @classmethod
    def build(cls, fields: Sequence[FieldSpec], rows: Sequence[dict[str, Any]], min_count: int = 1) -> Vocabulary:
        """Count values in ``rows`` and give each frequent one an index starting at 1."""
        index = {}
        for spec in fields:
            counts = Counter(v for row in rows for v in field_values(row, spec) if v is not None)
            frequent = sorted(v for v, c in counts.items() if c >= min_count)
            index[spec.name] = {v: i + 1 for i, v in enumerate(frequent)}
        return cls(fields, index)

    def sizes(self) -> dict[str, int]:
        """Rows of each field's embedding table (its values plus UNKNOWN)."""
        return {name: len(values) + 1 for name, values in self.index.items()}

    def encode_field(self, spec: FieldSpec, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """One field as an int64 array: (n,) for a ``cat`` field, (n, max_len) for bags and crosses."""
        lookup = self.index[spec.name]
        if not spec.is_bag:
            return np.fromiter((lookup.get(row.get(spec.name), UNKNOWN) for row in rows), np.int64, len(rows))
        arr = np.zeros((len(rows), spec.max_len), dtype=np.int64)
        for i, row in enumerate(rows):
            ids = [x for x in (lookup.get(v, UNKNOWN) for v in field_values(row, spec)) if x != UNKNOWN]
            arr[i, : min(len(ids), spec.max_len)] = ids[: spec.max_len]
        return arr

    def encode(self, rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Return per field an int64 array: (n,) for ``cat`` fields, (n, max_len) for bags and crosses."""
        return {spec.name: self.encode_field(spec, rows) for spec in self.fields}

    def encode_candidates(self, shared: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Like :meth:`encode` for rows that all carry the ``shared`` values: a field that only reads
        shared values is looked up once and returned as one row, (1,) or (1, max_len), for all."""
        out: dict[str, np.ndarray] = {}
        for spec in self.fields:
            reads = spec.of if spec.kind == "cross" else (spec.name,)
            if all(name in shared for name in reads):
                out[spec.name] = self.encode_field(spec, [shared])
            elif spec.kind == "cross":
                out[spec.name] = self.encode_cross(spec, shared, rows)
            else:
                out[spec.name] = self.encode_field(spec, rows)
        return out

    def encode_cross(self, spec: FieldSpec, shared: dict[str, Any], rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """A cross of a shared field and a candidate field, encoded once per distinct candidate value."""
        side = [name for name in spec.of if name not in shared]
        bags = {f.name for f in self.fields if f.is_bag}
        if len(side) != 1 or side[0] in bags:
            return self.encode_field(spec, [{**shared, **row} for row in rows])
        name, first = side[0], {}
        inverse = np.fromiter((first.setdefault(row.get(name), len(first)) for row in rows), np.int64, len(rows))
        return self.encode_field(spec, [{**shared, name: value} for value in first])[inverse]


@dataclass
class CtrData:
    """Impressions: field specs, rows, click labels, and per text slot the row -> text index and the text
    embedding matrix (slot 0: the ad creative; then context texts). Train and validation data are
    subsets of one CtrData, so they share the text matrices."""

    fields: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    labels: np.ndarray | None = None
    text_ids: list[np.ndarray] = field(default_factory=list)
    text_vectors: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, idx: np.ndarray) -> CtrData:
        """The rows at ``idx`` (same fields and text matrices)."""
        return CtrData(
            fields=self.fields,
            rows=[self.rows[i] for i in idx],
            labels=None if self.labels is None else self.labels[idx],
            text_ids=[t[idx] for t in self.text_ids],
            text_vectors=self.text_vectors,
        )

    def without_text(self) -> CtrData:
        """The same rows with no text slots (the ablation that shows what the backbone adds)."""
        return CtrData(fields=self.fields, rows=self.rows, labels=self.labels)

    def keys(self, name: str) -> np.ndarray:
        """The values of field ``name`` as an object array ("" where missing)."""
        return np.asarray([row.get(name) or "" for row in self.rows], dtype=object)
