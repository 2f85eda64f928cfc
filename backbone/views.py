"""Backbone API (staff only): training jobs and model versions."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from backbone import jobs, services
from backbone.models import ModelVersion, TrainingJob
from backbone.serializers import ModelVersionSerializer, StartTrainingRequestSerializer, TrainingJobSerializer


class TrainingJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = TrainingJob.objects.all()
    serializer_class = TrainingJobSerializer
    filterset_fields = ["status"]

    @extend_schema(request=StartTrainingRequestSerializer, responses={201: TrainingJobSerializer})
    def create(self, request):
        serializer = StartTrainingRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        apps, tasks = data.pop("apps", None), data.pop("tasks", None)
        job = services.start_training_job(apps=apps, tasks=tasks, parameters=data, user=request.user)
        return Response(TrainingJobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: TrainingJobSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        if not jobs.cancel_training_job(job_id=job.pk):
            return Response(
                {"detail": f"Job is {job.status}; only queued or running jobs can be cancelled."}, status=409
            )
        job.refresh_from_db()
        return Response(TrainingJobSerializer(job).data)


class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = ModelVersion.objects.all()
    serializer_class = ModelVersionSerializer
    filterset_fields = ["state"]

    @extend_schema(request=None, responses={202: ModelVersionSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        version = services.activate_version(version_id=self.get_object().pk)  # LifecycleError: 409
        return Response(ModelVersionSerializer(version).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: ModelVersionSerializer, 409: None})
    @action(detail=False, methods=["post"], url_path="roll-back")
    def roll_back(self, request):
        """Serve the previously active version again (after re-embedding, if its vectors were pruned)."""
        version = services.roll_back_version()  # LifecycleError: 409
        return Response(ModelVersionSerializer(version).data, status=status.HTTP_202_ACCEPTED)
