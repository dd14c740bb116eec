"""Routes of the REST API, mounted at /api/. Everything of a workspace lives under /api/w/{ws}/."""
from django.urls import path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from .views import agent, files, history, jobs, shares, storages, volumes, workspaces


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
    path("", workspaces.ApiRootView.as_view(), name="api-root"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script from a URL, so the page needs no inline script (CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("workspaces/", workspaces.WorkspaceListView.as_view(), name="api-workspaces"),
    # Volumes, files, shares, history
    path("w/<str:ws>/volumes/", volumes.VolumeListView.as_view(), name="api-volumes"),
    path(volume, volumes.VolumeDetailView.as_view(), name="api-volume"),
    path(volume + "duplicate/", volumes.DuplicateView.as_view(), name="api-duplicate"),
    path(volume + "quota/", volumes.QuotaView.as_view(), name="api-quota"),
    path("w/<str:ws>/trash/", volumes.TrashListView.as_view(), name="api-trash"),
    path("w/<str:ws>/trash/<str:name>/", volumes.TrashDetailView.as_view(), name="api-trash-volume"),
    path("w/<str:ws>/trash/<str:name>/restore/", volumes.TrashRestoreView.as_view(), name="api-trash-restore"),
    path(volume + "files/", files.FolderListView.as_view(), name="api-files-root"),
    path(volume + "files/<anypath:path>", files.FileView.as_view(), name="api-file"),
    path(volume + "folders/", files.FolderCreateView.as_view(), name="api-folders"),
    path(volume + "upload/", files.TarUploadView.as_view(), name="api-upload-tar"),
    path(volume + "move/", files.MoveView.as_view(), name="api-move"),
    path(volume + "shares/", shares.SharesView.as_view(), name="api-shares"),
    path(volume + "history/", history.HistoryView.as_view(), name="api-history"),
    path(volume + "history/<int:generation>/restore/", history.RestoreView.as_view(), name="api-restore"),
    path(volume + "history/prune/", history.PruneView.as_view(), name="api-prune"),
    path(volume + "health/", history.HealthView.as_view(), name="api-health"),
    path(volume + "health/repair/", history.RepairView.as_view(), name="api-repair"),
    # Storages (admins)
    path("w/<str:ws>/storages/", storages.StorageListView.as_view(), name="api-storages"),
    path("w/<str:ws>/storages/test/", storages.StorageTestNewView.as_view(), name="api-storage-test-new"),
    path("w/<str:ws>/storages/<int:pk>/", storages.StorageDetailView.as_view(), name="api-storage"),
    path("w/<str:ws>/storages/<int:pk>/test/", storages.StorageTestView.as_view(), name="api-storage-test"),
    # Jobs
    path("w/<str:ws>/jobs/", jobs.JobListView.as_view(), name="api-jobs"),
    path("w/<str:ws>/jobs/<int:job_id>/", jobs.JobDetailView.as_view(), name="api-job"),
    path("w/<str:ws>/jobs/<int:job_id>/cancel/", jobs.JobCancelView.as_view(), name="api-job-cancel"),
    path("w/<str:ws>/jobs/<int:job_id>/log/", jobs.JobLogView.as_view(), name="api-job-log"),
    # Engine endpoints for agent workers
    path("w/<str:ws>/agent/claim/", agent.ClaimView.as_view(), name="api-agent-claim"),
    path(job + "log/", agent.LogView.as_view(), name="api-agent-log"),
    path(job + "status/", agent.StatusView.as_view(), name="api-agent-status"),
    path(job + "heartbeat/", agent.HeartbeatView.as_view(), name="api-agent-heartbeat"),
    path(job + "script/", agent.ScriptEventView.as_view(), name="api-agent-script"),
    path(job + "commit/", agent.CommitBatchView.as_view(), name="api-agent-commit-batch"),
    path(job + "finish/", agent.FinishView.as_view(), name="api-agent-finish"),
    path(mount + "figures/", agent.MountFiguresView.as_view(), name="api-agent-figures"),
    path(mount + "lease/", agent.AcquireView.as_view(), name="api-agent-acquire"),
    path(mount + "lease/renew/", agent.RenewView.as_view(), name="api-agent-renew"),
    path(mount + "lease/release/", agent.ReleaseView.as_view(), name="api-agent-release"),
    path(mount + "pin/", agent.PinView.as_view(), name="api-agent-pin"),
    path(mount + "pin/renew/", agent.PinRenewView.as_view(), name="api-agent-pin-renew"),
    path(mount + "pin/release/", agent.PinReleaseView.as_view(), name="api-agent-pin-release"),
    path(mount + "manifest/", agent.ManifestView.as_view(), name="api-agent-manifest"),
    path(mount + "manifest/parts/", agent.ManifestPartsView.as_view(), name="api-agent-manifest-parts"),
    path(mount + "blobs/missing/", agent.MissingView.as_view(), name="api-agent-missing"),
    path(mount + "blobs/urls/", agent.BlobUrlsView.as_view(), name="api-agent-blob-urls"),
    path(mount + "blobs/<str:digest>", agent.BlobView.as_view(), name="api-agent-blob"),
    path(mount + "commit/", agent.CommitView.as_view(), name="api-agent-commit"),
]
