from django.urls import path

from . import views

V = "w/<slug:ws_id>/volumes/<str:name>/"

urlpatterns = [
    path("", views.home, name="home"),
    path("w/<slug:ws_id>/", views.workspace_home, name="workspace"),
    # Assets > Volumes
    path("w/<slug:ws_id>/assets/volumes/", views.volumes, name="volumes"),
    path("w/<slug:ws_id>/assets/volumes/leases/", views.volume_badges, name="volume_badges"),
    path("w/<slug:ws_id>/assets/volumes/new/", views.volume_new, name="volume_new"),
    path("w/<slug:ws_id>/principals/", views.principals, name="principals"),
    # One volume: files, sharing, delete, history
    path(V, views.volume_detail, name="volume"),
    path(V + "lease/", views.volume_lease, name="volume_lease"),
    path(V + "files/download/", views.file_download, name="file_download"),
    path(V + "files/raw/", views.file_raw, name="file_raw"),
    path(V + "files/preview/", views.file_preview, name="file_preview"),
    path(V + "files/upload/", views.file_upload, name="file_upload"),
    path(V + "files/new-folder/", views.folder_new, name="folder_new"),
    path(V + "files/move/", views.file_move, name="file_move"),
    path(V + "files/delete/", views.file_delete, name="file_delete"),
    path(V + "shares/", views.volume_shares, name="volume_shares"),
    path(V + "delete/", views.volume_delete, name="volume_delete"),
    path(V + "history/", views.volume_history, name="volume_history"),
    path(V + "history/<int:gen>/", views.history_diff, name="history_diff"),
    path(V + "history/<int:gen>/restore/", views.history_restore, name="history_restore"),
    # Settings > Storage (admins)
    path("w/<slug:ws_id>/settings/storage/", views.storage_settings, name="storage_settings"),
    path("w/<slug:ws_id>/settings/storage/new/", views.storage_edit, name="storage_new"),
    path("w/<slug:ws_id>/settings/storage/test/", views.storage_test, name="storage_test_form"),
    path("w/<slug:ws_id>/settings/storage/volume-storage/", views.volume_storage, name="volume_storage"),
    path("w/<slug:ws_id>/settings/storage/<int:pk>/", views.storage_edit, name="storage_edit"),
    path("w/<slug:ws_id>/settings/storage/<int:pk>/delete/", views.storage_delete, name="storage_delete"),
    path("w/<slug:ws_id>/settings/storage/<int:pk>/test/", views.storage_test, name="storage_test"),
    # Jobs
    path("w/<slug:ws_id>/jobs/", views.jobs_page, name="jobs"),
    path("w/<slug:ws_id>/jobs/run/", views.job_new, name="job_new"),
    path("w/<slug:ws_id>/jobs/<int:job_id>/", views.job_detail, name="job"),
    path("w/<slug:ws_id>/jobs/<int:job_id>/live/", views.job_live, name="job_live"),
    path("w/<slug:ws_id>/jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
]
