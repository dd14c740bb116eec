"""The REST API's views, one module per resource of a workspace: workspaces, volumes (and the
trash), files, shares, history, jobs, storages, and the engine endpoints for agent workers.

Each view: find the object and the caller's rights (`access`), validate input with a
serializer, call one service, serialize the output. Errors are VolumesErrors, rendered
as JSON by `volumes.api.errors.exception_handler`. `common` holds what they share.
"""
