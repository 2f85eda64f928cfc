"""Catalogue API: product CRUD (staff writes, storefront reads) and event ingestion."""

from __future__ import annotations

import re

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import pagination, permissions, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import services
from catalog.auth import PublicAccess, ServerAccess
from catalog.filters import ProductFilter
from catalog.models import Product
from catalog.serializers import EventBatchRequestSerializer, EventBatchResponseSerializer, ProductSerializer


class PageSizePagination(pagination.PageNumberPagination):
    """DRF's page numbers (``PAGE_SIZE`` a page), and ``page_size`` from 1 to ``max_page_size``: the list
    endpoints' pagination. A ``page_size`` that is not such a number is a 400 (DRF would ignore it)."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        """``page_size`` when sent (a 400 unless a whole number within bounds), else ``PAGE_SIZE``."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not re.fullmatch(r"[1-9][0-9]{0,5}", raw) or int(raw) > self.max_page_size:
            raise ValidationError(
                {self.page_size_query_param: [f"Must be a whole number from 1 to {self.max_page_size}."]}
            )
        return int(raw)

    def get_page_number(self, request, paginator):
        """The ``page`` sent, also when empty: DRF read ``page=`` as page 1; it is a 404 like ``page=x``."""
        number = request.query_params.get(self.page_query_param, 1)
        return paginator.num_pages if number in self.last_page_strings else number

    def get_schema_operation_parameters(self, view):
        """DRF's ``page`` and ``page_size`` parameters, with their bounds."""
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
        return parameters


class ProductViewSet(viewsets.ModelViewSet):
    queryset = Product.objects.all()
    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    pagination_class = PageSizePagination
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

    @extend_schema(request=EventBatchRequestSerializer, responses={201: EventBatchResponseSerializer})
    def post(self, request):
        serializer = EventBatchRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        counts = services.ingest_events(events=serializer.validated_data["events"])
        return Response(EventBatchResponseSerializer(counts).data, status=status.HTTP_201_CREATED)
