"""The nsjail sandbox, for real: user, filesystem, mounts, ownership, network, stopping."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from volumes.runner import Mount
from volumes.runner import sandbox as jail

from . import processes_with, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests check the root worker's uid mapping and chown")

LANGUAGES = ["python", "bash", "typescript"]
CWD = {"python": "/tmp", "bash": "/tmp", "typescript": "/tmp/bun"}


def probe(language: str, paths: list[str]) -> str:
    """A script that tries to write 'sandbox' to each path and reports who and where it is."""
    if language == "python":
        return (
            "import errno, os\n"
            "def main():\n"
            "    writes = {}\n"
            f"    for path in {paths!r}:\n"
            "        try:\n"
            "            with open(path, 'w') as out:\n"
            "                out.write('sandbox')\n"
            "            writes[path] = 'written'\n"
            "        except OSError as error:\n"
            "            writes[path] = errno.errorcode[error.errno]\n"
            "    return {'uid': os.getuid(), 'gid': os.getgid(), 'cwd': os.getcwd(), 'writes': writes}\n"
        )
    if language == "bash":
        quoted = " ".join(json.dumps(p) for p in paths)
        return (
            'printf \'{"uid": %s, "gid": %s, "cwd": "%s", "writes": {\' "$(id -u)" "$(id -g)" "$PWD"\n'
            'sep=""\n'
            f"for p in {quoted}; do\n"
            '  if err=$( { printf sandbox > "$p"; } 2>&1 ); then r=written\n'
            '  else case "$err" in *Read-only*) r=EROFS;; *"Permission denied"*) r=EACCES;; '
            '*"No such file"*) r=ENOENT;; *) r=other;; esac; fi\n'
            '  printf \'%s"%s": "%s"\' "$sep" "$p" "$r"; sep=", "\n'
            "done\n"
            "echo '}}'\n"
        )
    return (
        "import fs from 'node:fs';\n"
        "import process from 'node:process';\n"
        "export async function main() {\n"
        "  const writes: Record<string, string> = {};\n"
        f"  for (const path of {json.dumps(paths)}) {{\n"
        "    try { fs.writeFileSync(path, 'sandbox'); writes[path] = 'written'; }\n"
        "    catch (error: any) { writes[path] = error.code; }\n"
        "  }\n"
        "  return { uid: process.getuid(), gid: process.getgid(), cwd: process.cwd(), writes };\n"
        "}\n"
    )


@pytest.fixture
def volume(tmp_path):
    def make(name: str, files: dict[str, str] | None = None) -> Path:
        folder = tmp_path / "cache" / name / "tree"
        folder.mkdir(parents=True)
        for path, text in (files or {}).items():
            (folder / path).write_text(text)
        return folder

    return make


def owners(tree: Path) -> set[tuple[int, int]]:
    found = {(tree.lstat().st_uid, tree.lstat().st_gid)}
    for folder, dirs, files in os.walk(tree):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            found.add((st.st_uid, st.st_gid))
    return found


WORKER = {(os.geteuid(), os.getegid())}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_sandboxed_script_runs_as_nobody_in_its_working_directory(tmp_path, language):
    report = run(language, probe(language, []), tmp_path / "work", sandbox=True).value
    assert (report["uid"], report["gid"]) == (65534, 65534)
    assert report["cwd"] == CWD[language]


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_sandboxed_script_cannot_write_to_the_root_or_etc_but_can_write_to_tmp(tmp_path, language):
    paths = ["/probe", "/etc/probe", "/usr/probe", "/etc/hostname", "/tmp/probe"]
    writes = run(language, probe(language, paths), tmp_path / "work", sandbox=True).value["writes"]
    assert writes.pop("/tmp/probe") == "written"
    assert set(writes.values()) <= {"EROFS", "EACCES"}  # Bun says EACCES for an existing file it may not write
    assert not Path("/etc/probe").exists() and not Path("/probe").exists()


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_sandboxed_script_writes_into_its_relative_mount_and_the_files_land_in_the_volume(tmp_path, volume, language):
    host = volume("out", {"old.txt": "old"})
    report = run(language, probe(language, ["data/new.txt", "data/old.txt"]), tmp_path / "work",
                 mounts=[Mount(host, "data", False)], sandbox=True).value
    assert report["writes"] == {"data/new.txt": "written", "data/old.txt": "written"}
    assert (host / "new.txt").read_text() == "sandbox" and (host / "old.txt").read_text() == "sandbox"
    assert owners(host) == WORKER  # handed back to the worker after the run


@pytest.mark.parametrize("language", LANGUAGES)
def test_absolute_mounts_under_tmp_and_data_are_writable(tmp_path, volume, language):
    in_tmp, in_data = volume("a"), volume("b")
    mounts = [Mount(in_tmp, "/tmp/x", False), Mount(in_data, "/data/x", False)]
    report = run(language, probe(language, ["/tmp/x/f.txt", "/data/x/f.txt", "/data/elsewhere.txt"]), tmp_path / "work",
                 mounts=mounts, sandbox=True).value
    assert report["writes"] == {"/tmp/x/f.txt": "written", "/data/x/f.txt": "written", "/data/elsewhere.txt": "EROFS"}
    assert (in_tmp / "f.txt").read_text() == "sandbox" and (in_data / "f.txt").read_text() == "sandbox"
    assert not Path("/data").exists()  # nothing was created on the host's root


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_read_only_mount_refuses_writes_and_leaves_the_volume_unchanged(tmp_path, volume, language):
    host = volume("ref", {"keep.txt": "original"})
    report = run(language, probe(language, ["ref/keep.txt", "ref/new.txt", "/mnt/models/new.txt"]), tmp_path / "work",
                 mounts=[Mount(host, "ref", True), Mount(volume("models"), "/mnt/models", True)], sandbox=True).value
    assert set(report["writes"].values()) <= {"EROFS", "EACCES"}
    assert sorted(os.listdir(host)) == ["keep.txt"] and (host / "keep.txt").read_text() == "original"
    assert owners(host) == WORKER


def test_a_read_only_mount_can_read_files_only_their_owner_may_read(tmp_path, volume):
    host = volume("secret", {"private.txt": "for the job"})
    (host / "private.txt").chmod(0o600)
    script = "def main():\n    return open('in/private.txt').read()\n"
    assert run("python", script, tmp_path / "work", mounts=[Mount(host, "in", True)], sandbox=True).value == "for the job"
    assert (host / "private.txt").stat().st_mode & 0o777 == 0o600
    assert owners(host) == WORKER


def test_the_volume_is_handed_back_to_the_worker_even_when_the_script_fails(tmp_path, volume):
    host = volume("out")
    script = "import os\ndef main():\n    os.makedirs('data/deep/er')\n    open('data/deep/er/f', 'w').write('x')\n    raise RuntimeError('late failure')\n"
    outcome = run("python", script, tmp_path / "work", mounts=[Mount(host, "data", False)], sandbox=True)
    assert outcome.error == "RuntimeError: late failure"
    assert (host / "deep" / "er" / "f").exists()
    assert owners(host) == WORKER


def test_chowning_a_volume_never_follows_a_symlink_out_of_it(tmp_path, volume):
    outside = tmp_path / "outside.txt"
    outside.write_text("host file")
    os.chown(outside, 1234, 1234)
    host = volume("links")
    os.symlink(outside, host / "before")
    script = f"import os\ndef main():\n    os.symlink({str(outside)!r}, 'data/during')\n    return sorted(os.listdir('data'))\n"
    assert run("python", script, tmp_path / "work", mounts=[Mount(host, "data", False)], sandbox=True).value == [
        "before", "during"]
    assert (outside.stat().st_uid, outside.stat().st_gid) == (1234, 1234)
    assert owners(host) == WORKER


def test_the_sandbox_does_not_show_the_workers_files_or_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_SECRET", "s3cret")
    script = (
        "import os\ndef main():\n"
        "    return {'root': sorted(os.listdir('/')), 'env': dict(os.environ), 'work': os.path.exists('/work/main'),"
        " 'tmp': sorted(os.listdir('/tmp'))}\n"
    )
    report = run("python", script, tmp_path / "work", sandbox=True, env={"JOB_ID": "7"}).value
    assert not {"work", "root", "home", "var", "opt"} & set(report["root"])
    assert report["work"] is False
    assert report["tmp"] == [".volumes-runner"]
    assert report["env"]["HOME"] == "/tmp" and report["env"]["JOB_ID"] == "7"
    assert "WORKER_SECRET" not in report["env"]


def test_without_network_the_sandbox_cannot_reach_anything(tmp_path):
    script = (
        "import socket\ndef main():\n    try:\n        socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "        return 'connected'\n    except OSError as error:\n        return error.__class__.__name__ + str(error.errno)\n"
    )
    assert run("python", script, tmp_path / "work", sandbox=True, network="none").value == "OSError101"  # ENETUNREACH


def test_sandboxed_output_streams_into_the_log_including_dev_stderr(tmp_path):
    script = "echo out\necho err >&2\necho dev-stderr > /dev/stderr\necho dev-stdout > /dev/stdout\necho '[1]'\n"
    outcome = run("bash", script, tmp_path / "work", sandbox=True)
    assert outcome.value == [1]
    assert {"out", "err", "dev-stderr", "dev-stdout"} <= set(outcome.lines)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_stop_event_kills_a_sandboxed_script_within_two_seconds(tmp_path, language):
    marker = f"62.{time.time_ns() % 10**9}"
    script = {
        "python": f"import subprocess, time\ndef main():\n    subprocess.Popen(['sleep', '{marker}'])\n    time.sleep(60)\n",
        "bash": f"sleep {marker} &\nsleep 60\n",
        "typescript": f"import {{ spawn }} from 'node:child_process';\n"
                      f"export async function main() {{ spawn('sleep', ['{marker}']); await new Promise(r => setTimeout(r, 60000)); }}\n",
    }[language]
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    outcome = run(language, script, tmp_path / "work", sandbox=True, stop=stop, stop_reason=lambda: "lease lost")
    assert outcome.error == "lease lost"
    assert outcome.seconds < 2.5
    time.sleep(0.2)
    assert processes_with(marker) == []


def test_a_sandboxed_script_running_past_the_timeout_is_killed(tmp_path, volume):
    host = volume("out")
    outcome = run("bash", "touch data/started\nsleep 60\n", tmp_path / "work", mounts=[Mount(host, "data", False)],
                  sandbox=True, timeout=0.5)
    assert outcome.error == "timed out after 0.5 s"
    assert outcome.seconds < 2
    assert owners(host) == WORKER


def test_the_sandbox_user_has_no_capabilities_and_cannot_regain_privileges(tmp_path):
    script = (
        "def main():\n    status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
        "    return {key: status[key].strip() for key in ('Uid', 'Gid', 'Groups', 'CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs')}\n"
    )
    status = run("python", script, tmp_path / "work", sandbox=True).value
    assert status["Uid"].split() == ["65534"] * 4 and status["Gid"].split() == ["65534"] * 4
    assert status["Groups"] in ("", "65534")
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"] == "1"


def test_volumes_and_workdirs_below_private_folders_still_mount(tmp_path, volume):
    host = volume("hidden", {"f.txt": "seen"})
    (tmp_path / "cache").chmod(0o700)
    workdir = tmp_path / "private" / "work"
    workdir.mkdir(parents=True)
    workdir.parent.chmod(0o700)
    assert run("python", "def main():\n    return open('data/f.txt').read()\n", workdir,
               mounts=[Mount(host, "data", True)], sandbox=True).value == "seen"


def test_an_nsjail_that_cannot_start_explains_why(tmp_path):
    log_file = tmp_path / "nsjail.log"
    (tmp_path / "tmp").mkdir()
    command = jail.nsjail_command(
        ["/bin/true"], tmp_dir=tmp_path / "tmp", cwd="/tmp", network=False, time_limit=5, log_file=log_file, env={},
        binds=[jail.Bind(tmp_path / "missing", "/data/x", False)],
    )
    assert subprocess.run(command, capture_output=True).returncode == 255
    message = jail.failure(log_file)
    assert message.startswith("the sandbox did not start:") and "No such file or directory" in message


class TestDeno:
    @pytest.fixture(autouse=True)
    def deno(self, monkeypatch):
        from volumes.runner.wrappers import TOOLS_BIN

        if not (TOOLS_BIN / "deno").exists():
            pytest.fail("deno is not installed in .tools: run scripts/install_tools.sh")
        monkeypatch.setenv("VOLUMES_JS_RUNTIME", "deno")

    def test_deno_runs_in_tmp_deno_and_writes_into_a_relative_mount(self, tmp_path, volume):
        host = volume("out")
        report = run("typescript", probe("typescript", ["data/f.txt", "/etc/x"]), tmp_path / "work",
                     mounts=[Mount(host, "data", False)], sandbox=True).value
        assert report["cwd"] == "/tmp/deno" and report["uid"] == 65534
        assert report["writes"] == {"data/f.txt": "written", "/etc/x": "EROFS"}
        assert (host / "f.txt").read_text() == "sandbox"
