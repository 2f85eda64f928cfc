"""What ``manage.py train ads`` trains: the pCTR model on the served impressions and their clicks
(``fit_ctr_version``, the ads ``AppTrainer.fit``), its validator for a scheduled retraining's gate,
and the ``ads_ctr`` task of the shared trainer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from django.conf import settings

from ads.data import CtrData
from ads.metrics import ctr_metrics
from ads.ml import CtrConfig, CtrModel, fit_ctr_model
from ads.models import CtrModelVersion, ServedImpression
from ads.services import SERVING_FIELDS, NotEnoughImpressions
from backbone import lifecycle

logger = logging.getLogger(__name__)

MIN_IMPRESSIONS = 20
MIN_CLICKS = 4
VALIDATION_FRACTION = 0.2
TRAINING_LIMIT = 200_000  # the newest impressions a training reads by default (memory and time stay bounded)


def training_summary() -> str:
    """What ``manage.py train ads`` trains on (served impressions and their clicks), or "" when too few.

    The imported iPinYou impressions are not used: none of their fields (exchange, domain, slot
    size, IP...) exists when this platform serves an ad, so a model trained on them would read
    only unknown values here. They are what ``evaluate ads --dataset ipinyou`` measures on.
    """
    shown = ServedImpression.objects.count()
    clicks = ServedImpression.objects.filter(clicked_at__isnull=False).count()
    if shown < MIN_IMPRESSIONS or clicks < MIN_CLICKS:
        return ""
    return f"{shown} served impressions, {clicks} clicks"


def training_data(*, version, encoder, limit: int | None = None) -> CtrData:
    """The newest ``limit`` served impressions (oldest first) as CtrData: their logged fields, the creative
    embeddings of backbone ``version`` (those serving reads) and the context texts embedded with ``encoder``."""
    from ads.embeddings import creative_vectors

    newest = ServedImpression.objects.select_related("ad").order_by("-served_at", "-id")
    rows = list(newest[:limit] if limit else newest)[::-1]
    ads = list({r.ad_id: r.ad for r in rows}.values())
    ad_position = {ad.pk: i for i, ad in enumerate(ads)}
    contexts = sorted({r.context_text for r in rows})
    context_position = {t: i for i, t in enumerate(contexts)}
    return CtrData(
        fields=SERVING_FIELDS,
        rows=[r.features for r in rows],
        labels=np.asarray([1.0 if r.clicked_at else 0.0 for r in rows]),
        text_ids=[
            np.asarray([ad_position[r.ad_id] for r in rows], dtype=np.int64),
            np.asarray([context_position[r.context_text] for r in rows], dtype=np.int64),
        ],
        text_vectors=[
            creative_vectors(ads=ads, version_id=version.pk, encoder=encoder),
            encoder.encode(contexts) if contexts else np.zeros((0, encoder.dim), np.float32),
        ],
    )


def time_split(data: CtrData) -> tuple[CtrData, CtrData]:
    """(train, validation): the last ``VALIDATION_FRACTION`` of the impressions by time is the validation
    split; raise NotEnoughImpressions unless both parts hold clicks and non-clicks."""
    cut = int(len(data) * (1 - VALIDATION_FRACTION))
    train, val = data.subset(np.arange(cut)), data.subset(np.arange(cut, len(data)))
    for part in (train, val):
        if len(data) < MIN_IMPRESSIONS or not 0 < part.labels.sum() < len(part):
            raise NotEnoughImpressions(
                f"not enough served impressions with clicks to train ({len(data)} impressions, "
                f"{int(data.labels.sum())} clicks; both the older 80 % and the newest 20 % need clicks and non-clicks)"
            )
    return train, val


def fit_ctr_version(*, version, parameters: dict[str, Any], job_id: int | None = None, progress=None):
    """Train a pCTR model on the served impressions with the embeddings of backbone ``version``: the ads
    ``AppTrainer.fit`` of ``manage.py train``. Returns the ready CtrModelVersion; raises on failure (the row
    is then failed, with the error).

    Recipe parameters are the job's keys prefixed ``ads_`` (``ads_seeds=1``); ``ads_limit`` caps the
    impressions (the newest; default ``TRAINING_LIMIT``).
    Side effects: a CtrModelVersion row, a folder under ``MODELS_DIR/ads/``.
    """
    recipe = {key[len("ads_") :]: value for key, value in parameters.items() if key.startswith("ads_")}
    row = lifecycle.create_queued(
        CtrModelVersion, prefix="ctr", parameters=recipe, backbone_version=version, training_job_id=job_id
    )
    lifecycle.claim(CtrModelVersion, pk=row.pk)
    try:
        folder, metrics = _fit_and_save(row, version, recipe, progress or (lambda fraction, message: None))
    except Exception as exc:
        logger.exception("pCTR model %s failed", row.name)
        lifecycle.fail(CtrModelVersion, pk=row.pk, error=f"{type(exc).__name__}: {exc}")
        raise
    return lifecycle.succeed(CtrModelVersion, pk=row.pk, path=str(folder), metrics=metrics)


def _fit_and_save(row: CtrModelVersion, version, recipe: dict[str, Any], progress) -> tuple[Path, dict[str, Any]]:
    """Fit the recipe on the impressions, write the model folder; return it and the validation metrics."""
    from backbone.services import version_encoder

    def log(line: str) -> None:
        lifecycle.append_log(CtrModelVersion, pk=row.pk, line=line)

    torch.set_num_threads(settings.BACKBONE_TORCH_THREADS or torch.get_num_threads())
    train, val = time_split(
        training_data(version=version, encoder=version_encoder(version), limit=recipe.get("limit", TRAINING_LIMIT))
    )
    log(f"{len(train)} training and {len(val)} validation impressions, backbone {version.name}")
    progress(0.05, f"pctr: {len(train)} training and {len(val)} validation impressions")
    budget = int(recipe.get("seeds", CtrConfig.seeds)) * int(recipe.get("max_epochs", CtrConfig.max_epochs))
    epochs = []

    def on_epoch(line: str) -> None:
        epochs.append(line)
        log(line)
        progress(0.05 + 0.9 * min(1.0, len(epochs) / budget), f"pctr epoch {line}")

    model = fit_ctr_model(train, val, recipe, progress=on_epoch)
    metrics = {
        "validation": ctr_metrics(val.labels, model.predict(val)),
        "train_impressions": len(train),
        "validation_impressions": len(val),
        "backbone_version": version.name,
    }
    folder = Path(settings.MODELS_DIR) / "ads" / row.name
    model.save(folder, metrics)
    log(f"validation {metrics['validation']}")
    return folder, metrics


def validate_ctr_version(*, version, row: CtrModelVersion | None) -> tuple[str, float, int] | None:
    """AUC of pCTR model ``row`` (with the embeddings of the backbone it was fitted on, else ``version``)
    on the newest VALIDATION_FRACTION of the served impressions, the split its fit validates on: the
    ads score in a scheduled retraining's gate. None without a model or enough clicks."""
    from backbone.services import version_encoder

    if row is None:
        return None
    backbone = row.backbone_version or version
    try:
        _, val = time_split(training_data(version=backbone, encoder=version_encoder(backbone), limit=TRAINING_LIMIT))
    except NotEnoughImpressions:
        return None
    return "auc", ctr_metrics(val.labels, CtrModel.load(Path(row.path)).predict(val))["auc"], len(val)


def start_ctr_training(*, parameters: dict[str, Any] | None = None, user=None):
    """Enqueue the platform's one training job for the ads app (``manage.py train ads`` does the same).

    Side effects: a TrainingJob row and its message on the training queue (after commit).
    """
    from backbone.services import start_training_job

    return start_training_job(apps=["ads"], parameters=parameters, user=user)


def build_text_training_task(parameters: dict[str, Any]):
    """The ``ads_ctr`` task of the shared trainer, built from the served impressions (oldest first)."""
    from ads.text_task import AdTextTask

    limit = int(parameters.get("ads_limit", 20000))
    rows = (
        ServedImpression.objects.select_related("ad")
        .order_by("-served_at", "-id")
        .values_list("ad__title", "ad__text", "context_text", "clicked_at")[:limit]
    )
    examples = [
        (" | ".join(p for p in (title, text) if p), context, clicked is not None)
        for title, text, context, clicked in reversed(list(rows))
    ]
    return AdTextTask(examples, weight=float(parameters.get("ads_weight", 1.0)))
