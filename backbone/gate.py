"""The validation gate of a scheduled retraining: the new models serve only if each judged app scores
at least as well as what serves now, on the same validation split, measured the same way.

Each app's ``AppTrainer.validate`` scores one (backbone version, app model) pair; an app without one
is not judged (the job log says so). When the gate holds the new models back they stay ``ready``
(an operator may still activate them) and :data:`held_back` is sent, which ``monitoring`` turns into
an alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.dispatch import Signal

from backbone import lifecycle, registry
from backbone.models import ModelVersion, TrainedModel

held_back = Signal()  # sent with verdict=Verdict when a scheduled run keeps the serving models


@dataclass
class Verdict:
    promote: bool
    lines: list[str] = field(default_factory=list)
    scores: dict[str, dict] = field(default_factory=dict)


def judge(
    *, version: ModelVersion, rows: list[TrainedModel], apps: list[registry.AppTrainer], tolerance: float = 0.0
) -> Verdict:
    """Score new and serving models of every judged app on its validation split; promote unless one is worse."""
    serving = ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE).first()
    verdict = Verdict(promote=True)
    for trainer in apps:
        if trainer.validate is None:
            verdict.lines.append(f"{trainer.app}: no validation split, not judged")
            continue
        row = next((r for r in rows if r._meta.app_label == trainer.app), None)
        new = trainer.validate(version=version, row=row)
        old = trainer.validate(version=serving, row=lifecycle.active(type(row)) if row else None) if serving else None
        if new is None or old is None:
            verdict.lines.append(
                f"{trainer.app}: too little validation data{'' if serving else ' or nothing serving'}, not judged"
            )
            continue
        (metric, new_value, n), old_value = new, old[1]
        better = new_value >= old_value - tolerance
        verdict.promote &= better
        verdict.scores[trainer.app] = {"metric": metric, "new": new_value, "serving": old_value, "n": n}
        verdict.lines.append(
            f"{trainer.app}: {metric} {new_value:.4f} new vs {old_value:.4f} serving on {n} validation cases"
            f" -> {'at least as good' if better else 'worse: keeping the serving model'}"
        )
    return verdict
