"""The baselines ``evaluate ads`` measures beside the served model, in the same run on the same split.

- :func:`fit_hashed_logistic`: logistic regression on hashed one-hot ``field=value`` features of the
  same fields, their crosses (MovieLens: customer x genre) included, and the frozen creative
  embedding (a MiniLM title embedding), C picked by validation log loss;
- :func:`fit_lightgbm`: LightGBM on the same fields, categoricals native, setting and rounds
  picked on validation.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.metrics import log_loss

from ads.data import CtrData, FieldSpec, Vocabulary, field_values

logger = logging.getLogger(__name__)


def hashed_tokens(rows: Sequence[dict[str, Any]], specs: Sequence[FieldSpec]) -> list[list[str]]:
    """Each row as ``field=value`` tokens (every value of bags and crosses), for feature hashing."""
    return [[f"{spec.name}={v}" for spec in specs for v in field_values(row, spec) if v is not None] for row in rows]


def fit_hashed_logistic(
    train: CtrData,
    val: CtrData,
    *,
    text: bool = True,
    n_features: int = 2**20,
    grid: Sequence[float] = (0.1, 0.3, 1.0),
    seed: int = 13,
) -> Callable[[CtrData], np.ndarray]:
    """Logistic regression on hashed one-hot features of the data's fields (crosses included) and, with
    ``text``, the creative embedding (text slot 0) as dense columns; C picked by validation log loss."""
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.linear_model import LogisticRegression

    specs = [FieldSpec(**f) for f in train.fields]
    hasher = FeatureHasher(n_features=n_features, input_type="string", alternate_sign=False)

    def matrix(data: CtrData):
        x = hasher.transform(hashed_tokens(data.rows, specs))
        if text and data.text_vectors:
            x = sparse.hstack([x, sparse.csr_matrix(data.text_vectors[0][data.text_ids[0]])], format="csr")
        return x

    x_train, x_val = matrix(train), matrix(val)
    best = None
    for c in grid:
        model = LogisticRegression(C=c, max_iter=2000, solver="liblinear", random_state=seed)
        model.fit(x_train, train.labels)
        loss = log_loss(val.labels, model.predict_proba(x_val)[:, 1], labels=[0, 1])
        logger.info("logistic C=%s: validation log loss %.4f", c, loss)
        if best is None or loss < best[0]:
            best = (loss, model)
    model = best[1]
    return lambda data: model.predict_proba(matrix(data))[:, 1]


def lightgbm_matrix(
    rows: Sequence[dict[str, Any]], vocab: Vocabulary, top_bag: int = 50
) -> tuple[np.ndarray, list[int]]:
    """Categorical fields as integer codes (LightGBM categoricals), bag fields as multi-hot of their top values."""
    encoded = vocab.encode(rows)
    columns, categorical = [], []
    for spec in vocab.fields:
        arr = encoded[spec.name]
        if spec.kind == "cross":  # the trees find interactions themselves
            continue
        if spec.kind == "bag":
            for value_id in range(1, min(top_bag, len(vocab.index[spec.name])) + 1):
                columns.append((arr == value_id).any(axis=1).astype(np.float32))
        else:
            categorical.append(len(columns))
            columns.append(arr.astype(np.float32))
    return np.stack(columns, axis=1), categorical


# settings tried on validation (log loss picks one): mid-sized trees, smaller trees with stronger
# smoothing of the high-cardinality categoricals (user, movie, IP...), larger trees with weaker smoothing
LIGHTGBM_GRID = (
    {"num_leaves": 63, "min_data_in_leaf": 50, "cat_smooth": 10},
    {"num_leaves": 15, "min_data_in_leaf": 100, "cat_smooth": 50},
    {"num_leaves": 127, "min_data_in_leaf": 20, "cat_smooth": 5, "min_data_per_group": 20},
)


def frequency_vocabulary(specs: Sequence[FieldSpec], rows: Sequence[dict[str, Any]]) -> Vocabulary:
    """A vocabulary whose bag fields are ordered by frequency, so that a bag's "top" values are its most frequent."""
    vocab = Vocabulary.build(specs, rows, min_count=1)
    for spec in specs:
        if spec.kind == "bag":
            counts = Counter(v for row in rows for v in (row.get(spec.name) or []))
            vocab.index[spec.name] = {v: i + 1 for i, (v, _) in enumerate(counts.most_common())}
    return vocab


def fit_lightgbm(
    train: CtrData, val: CtrData, *, seed: int = 13, threads: int = 1, grid: Sequence[dict[str, Any]] = LIGHTGBM_GRID
) -> Callable[[CtrData], np.ndarray]:
    """LightGBM (gbdt) on the data's fields, categoricals native; the ``grid`` setting with the best
    validation log loss, its rounds chosen by early stopping on ``val``.

    Bag fields enter as indicators of their 50 most frequent values.
    """
    import lightgbm as lgb

    vocab = frequency_vocabulary([FieldSpec(**f) for f in train.fields], train.rows)
    x_train, cats = lightgbm_matrix(train.rows, vocab)
    x_val, _ = lightgbm_matrix(val.rows, vocab)
    base = {
        "objective": "binary",
        "learning_rate": 0.05,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "max_cat_to_onehot": 4,
        "seed": seed,
        "num_threads": threads,
        "verbose": -1,
    }
    # the grid changes min_data_in_leaf on the same Dataset: LightGBM needs feature_pre_filter off for that
    train_set = lgb.Dataset(
        x_train, train.labels, categorical_feature=cats, free_raw_data=False, params={"feature_pre_filter": False}
    )
    val_set = lgb.Dataset(x_val, val.labels, categorical_feature=cats, reference=train_set)
    best = None
    for setting in grid:
        booster = lgb.train(
            {**base, **setting},
            train_set,
            num_boost_round=2000,
            valid_sets=[val_set],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        loss = booster.best_score["valid_0"]["binary_logloss"]
        logger.info("lightgbm %s: validation log loss %.4f at %d rounds", setting, loss, booster.best_iteration)
        if best is None or loss < best[0]:
            best = (loss, booster)
    booster = best[1]
    return lambda data: booster.predict(lightgbm_matrix(data.rows, vocab)[0], num_iteration=booster.best_iteration)
