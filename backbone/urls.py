from django.urls import include, path
from rest_framework.routers import DefaultRouter

from backbone import views

router = DefaultRouter(trailing_slash=False)
router.register("training-jobs", views.TrainingJobViewSet, basename="training-job")
router.register("model-versions", views.ModelVersionViewSet, basename="model-version")

urlpatterns = [path("", include(router.urls))]
