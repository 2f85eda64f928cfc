"""Catalogue API: product CRUD (staff writes, storefront reads) and event ingestion."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import services
from catalog.auth import PublicAccess, ServerAccess
from catalog.filters import ProductFilter
from catalog.models import Product
from catalog.serializers import EventBatchRequestSerializer, EventBatchResponseSerializer, ProductSerializer


class ProductViewSet(viewsets.ModelViewSet):
    queryset = Product.objects.all()
    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    lookup_field = "sku"

    def get_permissions(self):
        if self.request.method in permissions.SAFE_METHODS:
            return [PublicAccess()]
        return [permissions.IsAdminUser()]

    @transaction.atomic
    def perform_create(self, serializer):
        product = serializer.save()
        services.schedule_product_embeddings(product_ids=[product.pk])

    @transaction.atomic
    def perform_update(self, serializer):
        product = serializer.save()
        services.schedule_product_embeddings(product_ids=[product.pk])


class EventIngestView(APIView):
    """Store a batch of behaviour events; duplicates by ``client_event_id`` are ignored."""

    permission_classes = [ServerAccess]

    @extend_schema(
        request=EventBatchRequestSerializer,
        responses={
            201: EventBatchResponseSerializer,
            404: OpenApiResponse(description="an event names an unknown SKU"),
        },
    )
    def post(self, request):
        serializer = EventBatchRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        counts = services.ingest_events(events=serializer.validated_data["events"])
        return Response(EventBatchResponseSerializer(counts).data, status=status.HTTP_201_CREATED)
