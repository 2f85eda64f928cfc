"""The search ranker and its helpers in plain Python: no ORM, no Django.

- :class:`QueryCorrector` fixes misspelt query words against the catalogue's own vocabulary
  (one edit away, most frequent catalogue word wins), so a typo still matches lexically.
- :func:`candidate_features` turns a query and its fused candidates (lexical, trigram and dense
  legs) into one feature row per candidate: BM25 over PostgreSQL's English lexemes, term
  coverage, trigram similarity, dense cosine, each leg's rank.
- :func:`fusion_scores` ranks those rows before any ranker is trained;
- :class:`Ranker` is a LightGBM lambdarank model over those features: ``fit`` / ``predict`` /
  ``save`` (model as text + ``config.json``) / ``load``. Nothing is pickled.
- :func:`add_typo` makes the seeded one-edit typo queries of the evaluation.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backbone.metrics import gain, ndcg_at_k

WORD = re.compile(r"[a-z0-9]+(?:[./-][a-z0-9]+)*")
LETTERS = string.ascii_lowercase
BM25_K1 = 1.2
BM25_B = 0.75
MISSING_RANK = 1000.0

FEATURES = (
    "bm25",
    "bm25_norm",
    "coverage",
    "idf_coverage",
    "matched",
    "query_terms",
    "last_term_matched",
    "first_term_matched",
    "title_terms",
    "unmatched_title_terms",
    "ts_rank",
    "trigram",
    "word_similarity",
    "cosine",
    "cosine_gap",
    "lexical_rank",
    "trigram_rank",
    "dense_rank",
    "legs",
    "raw_word_coverage",
    "number_match",
    "bigram_coverage",
    "query_characters",
    "bm25_gap",
    "trigram_gap",
)


def words(text: str) -> list[str]:
    """Return the lower-cased word tokens of ``text`` (letters/digits, with inner . / - kept)."""
    return WORD.findall(text.lower())


# --- query correction -------------------------------------------------------------------------


def edits1(word: str) -> set[str]:
    """Return every string one delete, transpose, replace or insert away from ``word`` (Norvig)."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = [a + b[1:] for a, b in splits if b]
    transposes = [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1]
    replaces = [a + c + b[1:] for a, b in splits if b for c in LETTERS]
    inserts = [a + c + b for a, b in splits for c in LETTERS]
    return set(deletes + transposes + replaces + inserts)


class QueryCorrector:
    """Replace query words unknown to the catalogue by the most frequent catalogue word one edit away.

    Words shorter than ``min_length`` and words with digits are left alone (sizes and model
    numbers are not typos). A word the catalogue knows is never changed.
    """

    def __init__(self, frequencies: Mapping[str, int], min_length: int = 4):
        self.frequencies = dict(frequencies)
        self.min_length = min_length

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_length: int = 4) -> QueryCorrector:
        """Build the vocabulary (word -> number of texts containing it) from catalogue texts."""
        counts: dict[str, int] = {}
        for text in texts:
            for word in set(words(text)):
                counts[word] = counts.get(word, 0) + 1
        return cls(counts, min_length=min_length)

    def correct_word(self, word: str) -> str:
        """Return ``word`` or its correction."""
        if len(word) < self.min_length or word in self.frequencies or any(c.isdigit() for c in word):
            return word
        best, best_count = word, 0
        for candidate in edits1(word):
            count = self.frequencies.get(candidate, 0)
            if count > best_count or (count == best_count and count and candidate < best):
                best, best_count = candidate, count
        return best

    def correct(self, query: str) -> str:
        """Return ``query`` with each unknown word corrected (lower-cased, tokens joined by spaces)."""
        return " ".join(self.correct_word(word) for word in words(query))


def add_typo(query: str, rng: random.Random, min_length: int = 5) -> str:
    """Return ``query`` with one random character edit in one random word of ``min_length``+ letters.

    The edit is a deletion, insertion, substitution or transposition of adjacent letters, chosen
    with ``rng``; a query without such a word is returned unchanged.
    """
    tokens = query.split(" ")
    eligible = [i for i, token in enumerate(tokens) if sum(c.isalpha() for c in token) >= min_length]
    if not eligible:
        return query
    index = rng.choice(eligible)
    word = tokens[index]
    kind = rng.choice(("delete", "insert", "substitute", "transpose"))
    position = rng.randrange(len(word))
    if kind == "delete":
        word = word[:position] + word[position + 1 :]
    elif kind == "insert":
        word = word[:position] + rng.choice(LETTERS) + word[position:]
    elif kind == "substitute":
        word = word[:position] + rng.choice([c for c in LETTERS if c != word[position].lower()]) + word[position + 1 :]
    else:
        position = min(position, len(word) - 2)
        word = word[:position] + word[position + 1] + word[position] + word[position + 2 :]
    tokens[index] = word
    return " ".join(tokens)


# --- features ---------------------------------------------------------------------------------


@dataclass
class LexiconStats:
    """Document frequencies of title lexemes over the catalogue, for BM25's idf."""

    document_frequency: dict[str, int]
    documents: int
    average_length: float

    def idf(self, lexeme: str) -> float:
        df = self.document_frequency.get(lexeme, 0)
        return math.log(1.0 + (self.documents - df + 0.5) / (df + 0.5))

    @classmethod
    def from_lexemes(cls, lexeme_lists: Iterable[Sequence[str]]) -> LexiconStats:
        counts: dict[str, int] = {}
        n, total = 0, 0
        for lexemes in lexeme_lists:
            n += 1
            total += len(lexemes)
            for lexeme in set(lexemes):
                counts[lexeme] = counts.get(lexeme, 0) + 1
        return cls(counts, n, total / n if n else 1.0)


@dataclass
class Candidate:
    """One product retrieved for a query, with what each retrieval leg said about it."""

    key: Any
    title: str
    lexemes: Sequence[str]
    ts_rank: float = 0.0
    trigram: float = 0.0
    word_similarity: float = 0.0
    cosine: float | None = None
    ranks: dict[str, int] = field(default_factory=dict)


def candidate_features(
    query: str, query_lexemes: Sequence[str], candidates: Sequence[Candidate], stats: LexiconStats
) -> np.ndarray:
    """Return an (n_candidates, len(FEATURES)) float32 matrix; ``query_lexemes`` in query order."""
    unique = list(dict.fromkeys(query_lexemes))
    idfs = {lexeme: stats.idf(lexeme) for lexeme in unique}
    idf_total = sum(idfs.values()) or 1.0
    query_words = set(words(query))
    query_numbers = {w for w in query_words if any(c.isdigit() for c in w)}
    query_tokens = words(query)
    query_bigrams = {(a, b) for a, b in zip(query_tokens, query_tokens[1:])}
    best_cosine = max((c.cosine for c in candidates if c.cosine is not None), default=0.0)
    rows = np.zeros((len(candidates), len(FEATURES)), dtype=np.float32)
    for i, candidate in enumerate(candidates):
        title_lexemes = set(candidate.lexemes)
        length = max(1, len(candidate.lexemes))
        norm = BM25_K1 * (1 - BM25_B + BM25_B * length / stats.average_length)
        matched = [lexeme for lexeme in unique if lexeme in title_lexemes]
        bm25 = sum(idfs[lexeme] * (BM25_K1 + 1) / (1 + norm) for lexeme in matched)
        title_tokens = words(candidate.title)
        title_words = set(title_tokens)
        title_bigrams = {(a, b) for a, b in zip(title_tokens, title_tokens[1:])}
        cosine = candidate.cosine if candidate.cosine is not None else 0.0
        rows[i] = (
            bm25,
            bm25 / idf_total,
            len(matched) / len(unique) if unique else 0.0,
            sum(idfs[lexeme] for lexeme in matched) / idf_total,
            len(matched),
            len(unique),
            float(bool(query_lexemes) and query_lexemes[-1] in title_lexemes),
            float(bool(query_lexemes) and query_lexemes[0] in title_lexemes),
            len(title_lexemes),
            len(title_lexemes) - len(matched),
            candidate.ts_rank,
            candidate.trigram,
            candidate.word_similarity,
            cosine,
            best_cosine - cosine,
            candidate.ranks.get("lexical", MISSING_RANK),
            candidate.ranks.get("trigram", MISSING_RANK),
            candidate.ranks.get("dense", MISSING_RANK),
            len(candidate.ranks),
            len(query_words & title_words) / len(query_words) if query_words else 0.0,
            len(query_numbers & title_words) / len(query_numbers) if query_numbers else -1.0,
            len(query_bigrams & title_bigrams) / len(query_bigrams) if query_bigrams else -1.0,
            len(query),
            0.0,
            0.0,
        )
    if len(rows):
        column = {name: i for i, name in enumerate(FEATURES)}
        # Per-query gaps to the best candidate: trees cannot compare candidates of a query otherwise.
        rows[:, column["bm25_gap"]] = rows[:, column["bm25"]].max() - rows[:, column["bm25"]]
        rows[:, column["trigram_gap"]] = rows[:, column["word_similarity"]].max() - rows[:, column["word_similarity"]]
    return rows


FUSION_FEATURES = ("bm25_norm", "cosine", "word_similarity")


def fusion_scores(features: np.ndarray) -> np.ndarray:
    """Score candidates before any ranker is trained: the sum of three signals on the same 0-1 scale.

    Title BM25 as a share of the query's total idf, the dense cosine, and the trigram
    ``word_similarity`` of the raw query (typos). Equal weights: on 700 Home Depot queries of a dev
    split (NDCG@10, gain 2^(rel-1)-1) they scored 0.411 against 0.387 for BM25 alone, 0.368 for
    tantivy BM25 and 0.367 for reciprocal-rank fusion of the three legs, and no weight between 0.6
    and 1.4 moved it by more than 0.004.
    """
    column = {name: i for i, name in enumerate(FEATURES)}
    return features[:, [column[name] for name in FUSION_FEATURES]].sum(axis=1)


# --- the learned ranker -----------------------------------------------------------------------


def relevance_label(relevance: float) -> int:
    """Map a graded relevance (1-3, unjudged 0) to lambdarank's integer label: thirds of a grade."""
    return max(0, int(round(relevance * 3)))


class Ranker:
    """LightGBM lambdarank over :data:`FEATURES`; label = relevance in thirds, gains those of the metric
    (:func:`backbone.metrics.gain`), so that it optimises the NDCG it is measured by."""

    def __init__(self, booster=None, config: dict[str, Any] | None = None):
        self.booster = booster
        self.config = config or {}

    @classmethod
    def fit(
        cls,
        features: Sequence[np.ndarray],
        relevances: Sequence[np.ndarray],
        valid_features: Sequence[np.ndarray] = (),
        valid_relevances: Sequence[np.ndarray] = (),
        *,
        rounds: int = 400,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        seed: int = 7,
        threads: int = 1,
    ) -> Ranker:
        """Train on one feature matrix and relevance vector per query; early-stop on the valid queries."""
        import lightgbm as lgb

        def dataset(xs, ys, reference=None):
            labels = np.concatenate([[relevance_label(r) for r in y] for y in ys]).astype(np.int32)
            return lgb.Dataset(
                np.concatenate(xs), label=labels, group=[len(y) for y in ys], reference=reference,
                feature_name=list(FEATURES), free_raw_data=False,
            )  # fmt: skip

        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "ndcg_eval_at": [10],
            "label_gain": [gain(i / 3) for i in range(10)],
            "lambdarank_truncation_level": 20,
            "learning_rate": learning_rate,
            "num_leaves": num_leaves,
            "min_data_in_leaf": 50,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "seed": seed,
            "num_threads": threads,
            "verbosity": -1,
        }
        train = dataset(features, relevances)
        callbacks, valid_sets = [], []
        if valid_features:
            valid_sets = [dataset(valid_features, valid_relevances, reference=train)]
            callbacks = [lgb.early_stopping(40, verbose=False)]
        booster = lgb.train(params, train, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks)
        best = booster.best_iteration or rounds
        config = {"features": list(FEATURES), "best_iteration": best, "params": params}
        if valid_sets:
            config["valid_ndcg@10"] = round(float(booster.best_score["valid_0"]["ndcg@10"]), 4)
        return cls(booster, config)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Return one score per row (higher is better)."""
        if len(features) == 0:
            return np.zeros(0)
        return self.booster.predict(features, num_iteration=self.config.get("best_iteration"), num_threads=1)

    def feature_importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        total = float(gains.sum()) or 1.0
        return {name: round(float(g) / total, 4) for name, g in zip(FEATURES, gains, strict=True)}

    def save(self, folder: Path) -> None:
        """Write ``ranker.txt`` (LightGBM's text model) and ``config.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "ranker.txt"))
        (folder / "config.json").write_text(json.dumps(self.config, indent=2))

    @classmethod
    def load(cls, folder: Path) -> Ranker:
        """Read a ranker written by :meth:`save`; refuse one trained on other features."""
        import lightgbm as lgb

        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if config.get("features") != list(FEATURES):
            raise ValueError(f"{folder}: ranker was trained on features {config.get('features')}")
        return cls(lgb.Booster(model_file=str(folder / "ranker.txt")), config)


# --- the backbone's search task: contrastive query -> product learning --------------------------


@dataclass
class RelevancePair:
    """A query, a relevant product text, and optional hard negatives (judged irrelevant for it)."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


POSITIVE_RELEVANCE = 2.33  # a product judged at least this relevant to a query is a positive of the fine-tune
NEGATIVE_RELEVANCE = 1.67  # at most this: a hard negative for the same query


def relevance_pairs(judged: Iterable[tuple[str, dict[str, float]]], rng: random.Random) -> list[RelevancePair]:
    """Contrastive pairs from graded labels, shuffled: for each (query, {product text: relevance}),
    one pair per positive with one hard negative of the same query (picked with ``rng``) when it has one."""
    pairs = []
    for query, labels in judged:
        negatives = [text for text, relevance in labels.items() if relevance <= NEGATIVE_RELEVANCE]
        for text, relevance in labels.items():
            if relevance >= POSITIVE_RELEVANCE:
                pairs.append(RelevancePair(query, text, (rng.choice(negatives),) if negatives else ()))
    rng.shuffle(pairs)
    return pairs


class LogitScale:
    """Factory of the search head: a learnable temperature of the contrastive loss."""

    @staticmethod
    def build(initial: float = 20.0):
        import torch
        from torch import nn

        class Scale(nn.Module):
            def __init__(self):
                super().__init__()
                self.log_scale = nn.Parameter(torch.tensor(math.log(initial)))

            def forward(self, similarities):
                return similarities * self.log_scale.exp().clamp(max=100.0)

        return Scale()


class SearchContrastiveTask:
    """The ``search`` training task: query and product text embeddings pulled together.

    Loss: cross-entropy over cosine similarities of each query to every positive of the batch
    (in-batch negatives) plus one hard negative per query when it has one (a product judged
    irrelevant for that query, e.g. relevance below 2). Evaluated by NDCG@10 of ranking each
    validation query's judged products by cosine (:func:`backbone.metrics.ndcg_at_k`).
    """

    name = "search"

    def __init__(
        self,
        pairs: Sequence[RelevancePair],
        validation: Sequence[tuple[str, dict[str, float]]],
        *,
        weight: float = 1.0,
        max_steps: int | None = None,
    ):
        self.pairs = list(pairs)
        self.validation = list(validation)
        self.weight = weight
        self.max_steps = max_steps  # read by the trainer: the most search batches one fine-tune runs

    def build_head(self, dim: int):
        return LogitScale.build()

    def batches(self, rng: random.Random, batch_size: int) -> list[list[RelevancePair]]:
        order = list(self.pairs)
        rng.shuffle(order)
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return [b for b in batches if len(b) > 1]

    def loss(self, encoder, head, batch: list[RelevancePair]):
        import torch

        queries = encoder(encoder.tokenize([pair.query for pair in batch]))
        documents = [pair.positive for pair in batch]
        documents += [pair.negatives[0] for pair in batch if pair.negatives]
        products = encoder(encoder.tokenize(documents))
        logits = head(queries @ products.T)
        # The same product can be the positive of two queries in a batch: mask those duplicates.
        duplicate = torch.tensor(
            [[documents[j] == batch[i].positive and j != i for j in range(len(documents))] for i in range(len(batch))],
            device=logits.device,
        )
        logits = logits.masked_fill(duplicate, float("-inf"))
        target = torch.arange(len(batch), device=logits.device)
        return torch.nn.functional.cross_entropy(logits, target)

    def _ndcg(self, encoder) -> dict[str, float]:
        if not self.validation:
            return {}
        scores = []
        for query, judged in self.validation:
            texts = list(judged)
            vectors = encoder.encode([query, *texts])
            similarities = vectors[1:] @ vectors[0]
            scores.append(ndcg_at_k([texts[i] for i in np.argsort(-similarities, kind="stable")], judged, 10))
        return {"judged_ndcg@10": round(float(np.mean(scores)), 4), "validation_queries": len(scores)}

    def evaluate(self, encoder, head) -> dict[str, float]:
        return self._ndcg(encoder)

    def baselines(self, encoder) -> dict[str, dict[str, float]]:
        return {"untuned": self._ndcg(encoder)}

    def head_config(self) -> dict[str, Any]:
        return {"kind": "contrastive-logit-scale", "pairs": len(self.pairs)}
