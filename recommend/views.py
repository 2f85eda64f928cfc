"""Recommendation API: "for you", similar, bought together, popular (storefront keys), models and training (staff)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from backbone.serializers import TrainingJobSerializer
from backbone.services import start_training_job
from catalog.auth import PublicAccess, ServerAccess
from recommend import services
from recommend.models import RecommenderModel
from recommend.serializers import (
    PopularResponseSerializer,
    RecommenderModelSerializer,
    RecommendRequestSerializer,
    RecommendResponseSerializer,
    SimilarRequestSerializer,
    SimilarResponseSerializer,
    TrainRequestSerializer,
)


class CustomerRecommendView(APIView):
    """Personalised "for you" items from the customer's newest events; popular-in-context as fallback.

    A server-scope key or staff: the answer names the customer's history in its reasons."""

    permission_classes = [ServerAccess]

    @extend_schema(parameters=[RecommendRequestSerializer], responses={200: RecommendResponseSerializer})
    def get(self, request, customer_id: str):
        params = RecommendRequestSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        result = services.recommend_for_customer(
            external_id=customer_id, k=params.validated_data["k"], category=params.validated_data["category"] or None
        )
        result["rec_id"] = services.log_recommendation(
            kind="for_you",
            items=result["items"],
            fallback=result["fallback"],
            model=result["model"],
            arm=result["arm"],
            customer=customer_id,
        )
        return Response(RecommendResponseSerializer(result).data)


class _ProductRecommendView(APIView):
    permission_classes = [PublicAccess]
    mode = "similar"

    @extend_schema(parameters=[SimilarRequestSerializer], responses={200: SimilarResponseSerializer})
    def get(self, request, sku: str):
        params = SimilarRequestSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        items = services.similar_products(sku=sku, k=params.validated_data["k"], mode=self.mode)
        rec_id = services.log_recommendation(kind=self.mode, items=items, product=sku)
        return Response(SimilarResponseSerializer({"product": sku, "items": items, "rec_id": rec_id}).data)


class SimilarView(_ProductRecommendView):
    """Products similar to one product (EASE item weights blended with text-embedding similarity)."""

    mode = "similar"


class BoughtTogetherView(_ProductRecommendView):
    """Products found in the most baskets and sessions with one product (co-occurrence only)."""

    mode = "bought_together"


class PopularView(APIView):
    """Popular in-stock products, optionally in a category (the popularity-only endpoint)."""

    permission_classes = [PublicAccess]

    @extend_schema(parameters=[RecommendRequestSerializer], responses={200: PopularResponseSerializer})
    def get(self, request):
        params = RecommendRequestSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        items = services.popular_products(
            k=params.validated_data["k"], category=params.validated_data["category"] or None
        )
        rec_id = services.log_recommendation(kind="popular", items=items)
        return Response(PopularResponseSerializer({"items": items, "rec_id": rec_id}).data)


class ModelsView(generics.ListAPIView):
    """Trained recommenders, newest first (GET), and training a new one (POST: a training job on the
    ``training`` queue, the same as ``manage.py train recommend``); staff only."""

    permission_classes = [permissions.IsAdminUser]
    queryset = RecommenderModel.objects.all()
    serializer_class = RecommenderModelSerializer
    filterset_fields = ["state"]

    @extend_schema(request=TrainRequestSerializer, responses={202: TrainingJobSerializer})
    def post(self, request):
        params = TrainRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        parameters = {**params.validated_data["parameters"], "activate": params.validated_data["activate"]}
        job = start_training_job(apps=["recommend"], parameters=parameters, user=request.user)
        return Response(TrainingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
