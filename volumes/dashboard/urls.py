from django.urls import path

from .views import edits, files, history, jobs, people, settings, shares, trash, volumes

V = "w/<slug:ws_id>/volumes/<str:name>/"

urlpatterns = [
    path("", volumes.home, name="home"),
    path("w/<slug:ws_id>/", volumes.workspace_home, name="workspace"),
    # Assets > Volumes
    path("w/<slug:ws_id>/assets/volumes/", volumes.volumes, name="volumes"),
    path("w/<slug:ws_id>/assets/volumes/leases/", volumes.volume_badges, name="volume_badges"),
    path("w/<slug:ws_id>/assets/volumes/new/", volumes.volume_new, name="volume_new"),
    path("w/<slug:ws_id>/assets/trash/", trash.trash, name="trash"),
    path("w/<slug:ws_id>/assets/trash/<str:name>/<str:action>/", trash.trash_action, name="trash_action"),
    path("w/<slug:ws_id>/principals/", shares.principals, name="principals"),
    # One volume: files, sharing, delete, history
    path(V, files.volume_detail, name="volume"),
    path(V + "lease/", volumes.volume_lease, name="volume_lease"),
    path(V + "health/", volumes.volume_health, name="volume_health"),
    path(V + "health/repair/", volumes.volume_repair, name="volume_repair"),
    path(V + "files/download/", files.file_download, name="file_download"),
    path(V + "files/raw/", files.file_raw, name="file_raw"),
    path(V + "files/zip/", files.folder_zip, name="folder_zip"),
    path(V + "files/versions/", history.file_versions, name="file_versions"),
    path(V + "files/bulk/", edits.files_bulk, name="files_bulk"),
    path(V + "files/edit/", edits.file_edit, name="file_edit"),
    path(V + "files/versions/restore/", history.file_version_restore, name="file_version_restore"),
    path(V + "files/preview/", files.file_preview, name="file_preview"),
    path(V + "files/upload/", edits.file_upload, name="file_upload"),
    path(V + "files/new-folder/", edits.folder_new, name="folder_new"),
    path(V + "files/move/", edits.file_move, name="file_move"),
    path(V + "files/delete/", edits.file_delete, name="file_delete"),
    path(V + "shares/", shares.volume_shares, name="volume_shares"),
    path(V + "delete/", volumes.volume_delete, name="volume_delete"),
    path(V + "duplicate/", volumes.volume_duplicate, name="volume_duplicate"),
    path(V + "quota/", volumes.volume_quota, name="volume_quota"),
    path(V + "history/", history.volume_history, name="volume_history"),
    path(V + "jobs/", jobs.volume_jobs, name="volume_jobs"),
    path(V + "history/<int:gen>/", history.history_diff, name="history_diff"),
    path(V + "history/<int:gen>/restore/", history.history_restore, name="history_restore"),
    path(V + "history/prune/", history.history_prune, name="history_prune"),
    # Settings > Storage (admins)
    path("w/<slug:ws_id>/settings/storage/", settings.storage_settings, name="storage_settings"),
    path("w/<slug:ws_id>/settings/storage/new/", settings.storage_edit, name="storage_new"),
    path("w/<slug:ws_id>/settings/storage/test/", settings.storage_test, name="storage_test_form"),
    path("w/<slug:ws_id>/settings/storage/volume-storage/", settings.volume_storage, name="volume_storage"),
    path("w/<slug:ws_id>/settings/storage/<int:pk>/", settings.storage_edit, name="storage_edit"),
    path("w/<slug:ws_id>/settings/storage/<int:pk>/delete/", settings.storage_delete, name="storage_delete"),
    path("w/<slug:ws_id>/settings/storage/<int:pk>/test/", settings.storage_test, name="storage_test"),
    # Settings > Members (admins); Account > API tokens; the set-password (invite) link
    path("w/<slug:ws_id>/settings/members/", people.members, name="members"),
    path("w/<slug:ws_id>/settings/workers/", settings.workers_page, name="workers"),
    path("w/<slug:ws_id>/settings/members/<int:user_id>/role/", people.member_role, name="member_role"),
    path("w/<slug:ws_id>/settings/members/<int:user_id>/remove/", people.member_remove, name="member_remove"),
    path("w/<slug:ws_id>/settings/members/<int:user_id>/agent/", people.member_agent, name="member_agent"),
    path("w/<slug:ws_id>/settings/members/<int:user_id>/link/", people.member_link, name="member_link"),
    path("account/tokens/", people.tokens, name="tokens"),
    path("account/tokens/<int:token_id>/revoke/", people.token_revoke, name="token_revoke"),
    path("set-password/<uidb64>/<token>/", people.SetPasswordView.as_view(), name="set_password"),
    # Jobs
    path("w/<slug:ws_id>/jobs/", jobs.jobs_page, name="jobs"),
    path("w/<slug:ws_id>/jobs/run/", jobs.job_new, name="job_new"),
    path("w/<slug:ws_id>/jobs/<int:job_id>/", jobs.job_detail, name="job"),
    path("w/<slug:ws_id>/jobs/<int:job_id>/live/", jobs.job_live, name="job_live"),
    path("w/<slug:ws_id>/jobs/<int:job_id>/log/", jobs.job_log, name="job_log"),
    path("w/<slug:ws_id>/jobs/<int:job_id>/cancel/", jobs.job_cancel, name="job_cancel"),
    path("w/<slug:ws_id>/jobs/<int:job_id>/rerun/", jobs.job_rerun, name="job_rerun"),
]
