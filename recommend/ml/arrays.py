"""The artifact contract of every model: ``config.json`` (with its ``kind``) and ``arrays.npz``
(no pickle), sparse matrices as named arrays, and sparse top-k."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp


def save_arrays(folder: Path, kind: str, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "arrays.npz", **arrays)
    (folder / "config.json").write_text(json.dumps({"kind": kind, **config}, indent=2))


def load_arrays(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    config = json.loads((folder / "config.json").read_text())
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return config, arrays


def sparse_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    matrix = matrix.tocsr()
    return {
        f"{prefix}_data": matrix.data.astype(np.float32),
        f"{prefix}_indices": matrix.indices.astype(np.int32),
        f"{prefix}_indptr": matrix.indptr.astype(np.int64),
        f"{prefix}_shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def sparse_from(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in arrays[f"{prefix}_shape"])
    return sp.csr_matrix((arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape)


def top_k_rows(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of a sparse matrix (ties: the lower column)."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    rows, cols, vals = [], [], []
    for r in range(matrix.shape[0]):
        lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
        top = np.argsort(-matrix.data[lo:hi], kind="stable")[:k]
        rows.append(np.full(len(top), r, dtype=np.int64))
        cols.append(matrix.indices[lo:hi][top])
        vals.append(matrix.data[lo:hi][top])
    if not rows:
        return sp.csr_matrix(matrix.shape, dtype=np.float32)
    out = sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=matrix.shape
    )
    out.eliminate_zeros()
    return out
