"""Routes of the REST API, mounted at /api/. Everything of a workspace lives under /api/w/{ws}/."""
from django.urls import path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import agent_views as agent
from . import views


class AnyPathConverter:
    """Like `path`, but also matches newlines, so every hostile path reaches the view's checks
    (and gets a JSON 400) instead of falling through to an HTML 404. Nothing is normalised."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyPathConverter, "anypath")

volume = "w/<str:ws>/volumes/<str:name>/"
job = "w/<str:ws>/agent/jobs/<int:job_id>/"
mount = job + "volumes/<str:name>/"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("workspaces/", views.WorkspaceListView.as_view(), name="api-workspaces"),
    # Volumes, files, shares, history
    path("w/<str:ws>/volumes/", views.VolumeListView.as_view(), name="api-volumes"),
    path(volume, views.VolumeDetailView.as_view(), name="api-volume"),
    path(volume + "files/", views.FolderListView.as_view(), name="api-files-root"),
    path(volume + "files/<anypath:path>", views.FileView.as_view(), name="api-file"),
    path(volume + "folders/", views.FolderCreateView.as_view(), name="api-folders"),
    path(volume + "move/", views.MoveView.as_view(), name="api-move"),
    path(volume + "shares/", views.SharesView.as_view(), name="api-shares"),
    path(volume + "history/", views.HistoryView.as_view(), name="api-history"),
    path(volume + "history/<int:generation>/restore/", views.RestoreView.as_view(), name="api-restore"),
    # Jobs
    path("w/<str:ws>/jobs/", views.JobListView.as_view(), name="api-jobs"),
    path("w/<str:ws>/jobs/<int:job_id>/", views.JobDetailView.as_view(), name="api-job"),
    path("w/<str:ws>/jobs/<int:job_id>/cancel/", views.JobCancelView.as_view(), name="api-job-cancel"),
    # Engine endpoints for agent workers
    path("w/<str:ws>/agent/claim/", agent.ClaimView.as_view(), name="api-agent-claim"),
    path(job + "log/", agent.LogView.as_view(), name="api-agent-log"),
    path(job + "status/", agent.StatusView.as_view(), name="api-agent-status"),
    path(job + "heartbeat/", agent.HeartbeatView.as_view(), name="api-agent-heartbeat"),
    path(job + "script/", agent.ScriptEventView.as_view(), name="api-agent-script"),
    path(job + "finish/", agent.FinishView.as_view(), name="api-agent-finish"),
    path(mount + "figures/", agent.MountFiguresView.as_view(), name="api-agent-figures"),
    path(mount + "lease/", agent.AcquireView.as_view(), name="api-agent-acquire"),
    path(mount + "lease/renew/", agent.RenewView.as_view(), name="api-agent-renew"),
    path(mount + "lease/release/", agent.ReleaseView.as_view(), name="api-agent-release"),
    path(mount + "manifest/", agent.ManifestView.as_view(), name="api-agent-manifest"),
    path(mount + "blobs/missing/", agent.MissingView.as_view(), name="api-agent-missing"),
    path(mount + "blobs/<str:digest>", agent.BlobView.as_view(), name="api-agent-blob"),
    path(mount + "commit/", agent.CommitView.as_view(), name="api-agent-commit"),
]
