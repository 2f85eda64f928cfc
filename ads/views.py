"""Ads API: staff CRUD of advertisers, campaigns, ads and slots; storefront ad selection and clicks."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from ads import services, training
from ads.models import Ad, AdSlot, Advertiser, Campaign
from ads.serializers import (
    AdClickRequestSerializer,
    AdClickResponseSerializer,
    AdSelectRequestSerializer,
    AdSelectResponseSerializer,
    AdSerializer,
    AdSlotSerializer,
    AdTrainRequestSerializer,
    AdvertiserSerializer,
    CampaignSerializer,
)
from backbone.serializers import TrainingJobSerializer
from catalog.auth import PublicAccess


class AdvertiserViewSet(viewsets.ModelViewSet):
    queryset = Advertiser.objects.all()
    serializer_class = AdvertiserSerializer
    permission_classes = [permissions.IsAdminUser]


class CampaignViewSet(viewsets.ModelViewSet):
    queryset = Campaign.objects.select_related("advertiser")
    serializer_class = CampaignSerializer
    permission_classes = [permissions.IsAdminUser]


class AdViewSet(viewsets.ModelViewSet):
    queryset = Ad.objects.select_related("landing_product")
    serializer_class = AdSerializer
    permission_classes = [permissions.IsAdminUser]


class AdSlotViewSet(viewsets.ModelViewSet):
    queryset = AdSlot.objects.all()
    serializer_class = AdSlotSerializer
    permission_classes = [permissions.IsAdminUser]


class AdSelectView(APIView):
    """Rank eligible ads by bid x pCTR above the slot's reserve; log each served ad with a click token."""

    permission_classes = [PublicAccess]

    @extend_schema(
        request=AdSelectRequestSerializer,
        responses={
            200: AdSelectResponseSerializer,
            404: OpenApiResponse(description="unknown or inactive slot, unknown product"),
        },
    )
    def post(self, request):
        serializer = AdSelectRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        context = data.get("context") or {}
        result = services.select_ads(
            slot=data["slot"],
            k=data["k"],
            **{key: context.get(key, "") for key in ("query", "product", "customer")},
        )
        return Response(AdSelectResponseSerializer(result).data)


class AdClickView(APIView):
    """Record a click on a served ad once and charge its campaign (second price, within the daily budget)."""

    permission_classes = [PublicAccess]

    @extend_schema(
        request=AdClickRequestSerializer,
        responses={
            201: AdClickResponseSerializer,
            404: OpenApiResponse(description="unknown token"),
            409: OpenApiResponse(description="token already clicked, or past its click window (not charged)"),
        },
    )
    def post(self, request):
        serializer = AdClickRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.record_click(token=serializer.validated_data["token"])  # 404 unknown, 409 replayed
        return Response(AdClickResponseSerializer(result).data, status=status.HTTP_201_CREATED)


class AdTrainView(APIView):
    """Start the platform's training job for the ads app (as ``manage.py train ads``): the pCTR model on the
    served impressions, activated when it succeeds unless ``activate`` is false."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(
        request=AdTrainRequestSerializer,
        responses={202: TrainingJobSerializer},
    )
    def post(self, request):
        serializer = AdTrainRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        parameters = {"activate": data["activate"], **{f"ads_{k}": v for k, v in data.items() if k != "activate"}}
        job = training.start_ctr_training(parameters=parameters, user=request.user)
        return Response(TrainingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
