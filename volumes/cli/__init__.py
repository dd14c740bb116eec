"""The `volume` command's work: the same verbs against this server's services (`local`, as
`--user USER`) or a remote server's REST API (`remote`, `--server URL` with a token), and the
get and put of files and folders on either (`transfers`)."""
from __future__ import annotations

from volumes.agent import resolve_token
from volumes.exceptions import VolumesError

from .local import LocalBackend
from .remote import RemoteBackend


def backend_for(workspace: str, user: str | None, server: str | None, token: str = "",
                token_file: str | None = None) -> LocalBackend | RemoteBackend:
    """The remote backend with `server` (and the API token), else this server's acting as `user`."""
    if server:
        token = resolve_token(token, token_file)
        if not token:
            raise VolumesError("--server needs the API token: VOLUMES_TOKEN, a file (--token-file or "
                               "VOLUMES_TOKEN_FILE), or --token")
        return RemoteBackend(server, token, workspace)
    if not user:
        raise VolumesError("give --user USER to act as on this server, or --server URL --token TOKEN")
    return LocalBackend(workspace, user)
