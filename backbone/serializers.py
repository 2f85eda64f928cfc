"""Serializers of the backbone API: training jobs and model versions."""

from __future__ import annotations

from rest_framework import serializers

from backbone import registry
from backbone.models import ModelVersion, TrainingJob
from catalog.serializers import JSONTypesMixin


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "state",
            "tasks",
            "metrics",
            "error",
            "activation_progress",
            "training_job",
            "created_at",
            "finished_at",
            "activated_at",
            "base",
        ]
        read_only_fields = fields


class TrainingJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "parameters",
            "status",
            "progress",
            "metrics",
            "log",
            "error",
            "worker",
            "result_version",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields


class StartTrainingRequestSerializer(JSONTypesMixin, serializers.Serializer):
    apps = serializers.ListField(
        child=serializers.ChoiceField(choices=[]),
        required=False,
        min_length=1,
        help_text="Apps to train, as `manage.py train APP ...`; omitted: every app with data.",
    )
    tasks = serializers.ListField(
        child=serializers.ChoiceField(choices=[]),
        required=False,
        min_length=1,
        help_text="Advanced: the backbone tasks of the fine-tune (default: those of the apps with data).",
    )
    epochs = serializers.FloatField(required=False, min_value=0.01, max_value=50)
    batch_size = serializers.IntegerField(required=False, min_value=2, max_value=512)
    lr = serializers.FloatField(required=False, min_value=1e-7, max_value=1e-2)
    head_lr = serializers.FloatField(required=False, min_value=1e-6, max_value=1e-1)
    seed = serializers.IntegerField(required=False)
    layer_decay = serializers.FloatField(
        required=False, min_value=0.1, max_value=1.0, help_text="Layer-wise LR decay (1: one rate for all layers)."
    )
    freeze_word_embeddings = serializers.BooleanField(
        required=False, help_text="Keep the token embedding matrix as it is (faster steps)."
    )
    max_examples = serializers.IntegerField(
        required=False, min_value=10, help_text="Cap on training examples per task."
    )
    intent_dataset = serializers.CharField(
        required=False,
        max_length=50,
        help_text="Intents task: train only on the intents of this dataset, e.g. banking77.",
    )
    activate = serializers.BooleanField(
        required=False, default=True, help_text="Serve the new models once trained (false: keep serving the current)."
    )

    def get_fields(self):
        """The fields, with the registered apps and tasks as choices (the registry fills at startup)."""
        fields = super().get_fields()
        fields["apps"].child.choices = sorted(registry.APP_TRAINERS)
        fields["tasks"].child.choices = sorted(registry.TASK_FACTORIES)
        return fields
