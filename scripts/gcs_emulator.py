"""gcp-storage-emulator as the storage tests and `manage.py bench` run it: `python scripts/gcs_emulator.py start -H
127.0.0.1 --port PORT --in-memory -q` (the emulator from requirements-dev.txt, with three things fixed).

- It serves one request at a time from a listen backlog of 5, so more concurrent clients got their connections
  dropped: the backlog is 128.
- In memory, it rewrote a JSON snapshot of every object after each write (quadratic, and pointless): not done.
- A media upload of no bytes (an empty file) failed: its missing body was read as None, not b"".
- It ignored ifGenerationMatch=0 on an upload; GCS refuses the upload with 412 when the object exists, and the
  store relies on that for create-only writes (a store finds out once per server, storage/gcs.py _asks_first).
  A rewrite still ignores it, as do the emulators of tests/servers.py's PrivateStorage.
"""
import http.server
import sys
from http import HTTPStatus

from gcp_storage_emulator import storage
from gcp_storage_emulator.handlers import objects

http.server.HTTPServer.request_queue_size = 128
if "--in-memory" in sys.argv:
    storage.Storage._write_config_to_file = lambda self: None
_insert = objects.insert


def insert(request, response, storage, *args, **kwargs):
    if request.query.get("uploadType") == ["media"] and request.data is None:
        request._data = b""
    if request.query.get("ifGenerationMatch") == ["0"] and "upload_id" not in request.query:
        data = request.data if isinstance(request.data, dict) else {}  # multipart: {"meta": ...}; resumable: meta
        name = request.query.get("name", [data.get("meta", data).get("name")])[0]
        try:
            storage.get_file_obj(request.params["bucket_name"], name)
        except Exception:  # NotFound: the object does not exist
            pass
        else:
            response.status = HTTPStatus.PRECONDITION_FAILED
            return None
    return _insert(request, response, storage, *args, **kwargs)


objects.insert = insert  # before the server module builds its routes from it
from gcp_storage_emulator.__main__ import main  # noqa: E402

sys.argv[0] = "gcp-storage-emulator"
sys.exit(main())
