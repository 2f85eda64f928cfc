"""The list endpoints' pagination (``REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"]``)."""

from __future__ import annotations

import re

from rest_framework import pagination
from rest_framework.exceptions import ValidationError


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
