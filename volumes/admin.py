from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from .models import Job, JobVolume, Membership, ObjectStorage, Volume, VolumeCommit, Workspace


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


class ObjectStorageInline(admin.StackedInline):
    model = ObjectStorage
    extra = 0


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "volume_storage", "created_at"]
    inlines = [MembershipInline, ObjectStorageInline]


@admin.register(ObjectStorage)
class ObjectStorageAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "kind", "is_primary"]
    list_filter = ["kind"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["workspace", "user", "role"]
    list_filter = ["role"]


@admin.register(Volume)
class VolumeAdmin(GuardedModelAdmin):
    list_display = ["name", "workspace", "owner", "size_bytes", "file_count", "generation", "lease_holder"]
    list_filter = ["workspace"]
    search_fields = ["name"]
    readonly_fields = ["generation", "manifest_key", "lease_token", "lease_holder", "lease_expires_at"]


@admin.register(VolumeCommit)
class VolumeCommitAdmin(admin.ModelAdmin):
    list_display = ["volume", "generation", "created_at", "user", "job", "files_added", "files_changed", "files_deleted"]


class JobVolumeInline(admin.TabularInline):
    model = JobVolume
    extra = 0


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "workspace", "user", "language", "status", "created_at", "worker"]
    list_filter = ["status", "language"]
    inlines = [JobVolumeInline]


@admin.register(JobVolume)
class JobVolumeAdmin(admin.ModelAdmin):
    list_display = ["job", "volume_name", "mode", "base_generation", "committed_generation"]
