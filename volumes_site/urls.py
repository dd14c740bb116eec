from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from volumes.ops import views as ops

urlpatterns = [
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(template_name="volumes/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include("volumes.api.urls")),
    path("", include("volumes.dashboard.urls")),
]
