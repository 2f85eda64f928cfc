"""Recommendation models behind one small interface: ``fit`` / ``score`` / ``save`` / ``load``.

Plain NumPy/SciPy (ALS through the ``implicit`` library, the re-ranker through LightGBM), no ORM.
Every model scores *histories* given at call time (item indices with their recency steps), so a
customer's newest events change the next answer without a retrain, and ``evaluate recommend`` and
the API score through the same :func:`rank_scores`.

Items are a compact index of the items that have interactions: products nobody has touched are
not in it (the services reach them through their text embeddings). Item x item weights are dense
blocks over items that share customers or baskets (:class:`BlockWeights`): two datasets imported
into one platform never share a customer, so their items form separate blocks, and 68,000
products of which 13,600 have events cost a 9,700- and a 3,900-item block, not 68,000².

- ``popularity``, ``item_knn``, ``als``, ``ease``, ``content``: the baselines of ``evaluate recommend``.
- ``hybrid``: a blend of EASE over a binary and a recency-weighted history, next-item
  transitions, EASE over baskets, text-embedding similarity and recent popularity.
- ``ranked_hybrid`` (served and measured): the hybrid's candidates re-ranked by bagged LightGBM
  LambdaRank rankers; :func:`fit_recommender` is its one training recipe.

Modules, each importing only those above it:

- ``data``: :class:`History`, :class:`TrainSet`, the matrices built from them, leave-last-out splits.
- ``arrays``: the ``config.json`` + ``arrays.npz`` artifact contract, sparse top-k.
- ``ease``: block-dense item x item weights (:class:`BlockWeights`) and EASE.
- ``base``: the :class:`Recommender` interface and :func:`rank_scores`.
- ``baselines``: the five baselines.
- ``hybrid``: :class:`HybridConfig`, :class:`HybridModel` and its components, bought-together.
- ``ranked``: :class:`RankedHybridModel`, :func:`fit_recommender`, :func:`load_model`.
"""

from recommend.ml.base import Recommender, rank_scores
from recommend.ml.baselines import ALSModel, ContentModel, EASEModel, ItemKNNModel, PopularityModel
from recommend.ml.data import MAX_HISTORY, History, TrainSet, build_train_set
from recommend.ml.ease import BlockWeights, ease_weights, item_blocks
from recommend.ml.hybrid import HybridConfig, HybridModel, recent_popularity
from recommend.ml.ranked import MODELS, RankedHybridModel, fit_recommender, load_model

__all__ = [
    "MAX_HISTORY",
    "MODELS",
    "ALSModel",
    "BlockWeights",
    "ContentModel",
    "EASEModel",
    "History",
    "HybridConfig",
    "HybridModel",
    "ItemKNNModel",
    "PopularityModel",
    "RankedHybridModel",
    "Recommender",
    "TrainSet",
    "build_train_set",
    "ease_weights",
    "fit_recommender",
    "item_blocks",
    "load_model",
    "rank_scores",
    "recent_popularity",
]
