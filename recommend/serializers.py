"""Request and response serializers of the recommendation API."""

from __future__ import annotations

from dataclasses import fields

from rest_framework import serializers

from catalog.serializers import JSONTypesMixin, QueryIntegerField
from recommend import ml
from recommend.models import RecommenderModel
from recommend.services import MAX_K, unknown_parameters


class RecommendRequestSerializer(serializers.Serializer):
    k = QueryIntegerField(min_value=1, max_value=MAX_K, default=10, help_text=f"How many items (1-{MAX_K}).")
    category = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default="", help_text="Category prefix, e.g. 'movies/Drama'."
    )


class SimilarRequestSerializer(serializers.Serializer):
    k = QueryIntegerField(min_value=1, max_value=MAX_K, default=10, help_text=f"How many items (1-{MAX_K}).")


class RecommendedItemSerializer(serializers.Serializer):
    sku = serializers.CharField(source="product.sku")
    title = serializers.CharField(source="product.title")
    category_path = serializers.CharField(source="product.category_path")
    price = serializers.DecimalField(source="product.price", max_digits=12, decimal_places=2, allow_null=True)
    score = serializers.FloatField()
    reason = serializers.CharField(help_text="E.g. 'because you viewed X', 'popular in Y', 'similar to X'.")
    source = serializers.ChoiceField(choices=["model", "new_product", "popular", "text"])


REC_ID_HELP = "Echo it as the rec_id of the events this answer leads to (clicks are attributed to it)."


class RecommendResponseSerializer(serializers.Serializer):
    rec_id = serializers.CharField(help_text=REC_ID_HELP)
    customer = serializers.CharField()
    arm = serializers.ChoiceField(
        choices=["A", "B"],
        allow_null=True,
        help_text="The arm of a running A/B test that served it (A: the active model, B: the challenger); null without one.",
    )
    fallback = serializers.ChoiceField(
        choices=["unknown_customer", "no_history", "no_model"],
        allow_null=True,
        help_text="Why popular-in-context items were served instead of personalised ones (null when personalised).",
    )
    items = RecommendedItemSerializer(many=True)


class SimilarResponseSerializer(serializers.Serializer):
    rec_id = serializers.CharField(help_text=REC_ID_HELP)
    product = serializers.CharField(help_text="The SKU asked about.")
    items = RecommendedItemSerializer(many=True)


class PopularResponseSerializer(serializers.Serializer):
    rec_id = serializers.CharField(help_text=REC_ID_HELP)
    items = RecommendedItemSerializer(many=True)


class HybridParametersSerializer(JSONTypesMixin, serializers.Serializer):
    """Overrides of recommend.ml.HybridConfig fields (and ``seed``), typed as their defaults; others are a 400."""

    additional_properties = False  # documented as additionalProperties: false (config.schema)

    def get_fields(self):
        """One optional number per HybridConfig field (an integer where its default is one), and ``seed``."""
        numbers = {
            f.name: serializers.IntegerField(required=False)
            if isinstance(f.default, int)
            else serializers.FloatField(required=False)
            for f in fields(ml.HybridConfig)
        }
        return {**numbers, "seed": serializers.IntegerField(required=False)}

    def to_internal_value(self, data):
        """The known parameters, typed; a 400 naming each unknown one."""
        unknown = unknown_parameters(data) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown parameter."] for name in unknown})
        return super().to_internal_value(data)


class TrainRequestSerializer(JSONTypesMixin, serializers.Serializer):
    activate = serializers.BooleanField(default=True, help_text="Serve the new model as soon as it is trained.")
    parameters = HybridParametersSerializer(required=False, default=dict)


class RecommenderModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = RecommenderModel
        fields = [
            "id",
            "name",
            "state",
            "parameters",
            "metrics",
            "error",
            "n_items",
            "n_customers",
            "n_events",
            "training_job",
            "created_at",
            "finished_at",
            "activated_at",
        ]
        read_only_fields = fields
