"""Search API: hybrid product search, suggestions, click logging (storefront key or staff)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from backbone import errors
from catalog.auth import PublicAccess
from catalog.services import products_by_sku
from search import services
from search.serializers import (
    ClickRequestSerializer,
    ClickResponseSerializer,
    SearchRequestSerializer,
    SearchResponseSerializer,
    SuggestRequestSerializer,
    SuggestResponseSerializer,
)


class SearchView(APIView):
    """Products ranked for a query, with filters, facets over the whole match set, and pagination."""

    permission_classes = [PublicAccess]

    @extend_schema(parameters=[SearchRequestSerializer], responses={200: SearchResponseSerializer})
    def get(self, request):
        params = SearchRequestSerializer(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        data = params.validated_data
        filters = services.SearchFilters(
            category=data["category"],
            brand=data["brand"],
            min_price=data.get("min_price"),
            max_price=data.get("max_price"),
            in_stock=data["in_stock"],
        )
        result = services.search_products(
            query=data["q"],
            filters=filters,
            sort=data["sort"],
            page=data["page"],
            page_size=data["page_size"],
            session=data["session"],
            mode=data["mode"],
            facets=data["facets"],
        )
        return Response(SearchResponseSerializer(result).data)


class SuggestView(APIView):
    """Autocomplete from popular past queries and product titles, tolerant of typos."""

    permission_classes = [PublicAccess]

    @extend_schema(parameters=[SuggestRequestSerializer], responses={200: SuggestResponseSerializer})
    def get(self, request):
        params = SuggestRequestSerializer(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        suggestions = services.suggest(query=params.validated_data["q"], limit=params.validated_data["limit"])
        return Response(SuggestResponseSerializer({"suggestions": suggestions}).data)


class SearchClickView(APIView):
    """Log that the shopper opened a product from a search's results (training data for the ranker)."""

    permission_classes = [PublicAccess]

    @extend_schema(
        request=ClickRequestSerializer,
        responses={201: ClickResponseSerializer, 404: OpenApiResponse(description="unknown search_id or sku")},
    )
    def post(self, request):
        params = ClickRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        product = products_by_sku([data["sku"]]).get(data["sku"])
        if product is None:
            raise errors.NotFound("Unknown product.", field="sku")
        click = services.record_click(log_id=data["search_id"], product_id=product.pk, position=data["position"])
        return Response(ClickResponseSerializer({"click_id": click.pk}).data, status=status.HTTP_201_CREATED)
