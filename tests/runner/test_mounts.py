"""Mount paths: validation, symlinks without sandbox, and where they land in the sandbox."""
from __future__ import annotations

import os

import pytest

from volumes.exceptions import InvalidPath
from volumes.runner import Mount
from volumes.runner.mounts import check_mounts, link_mounts, sandbox_target

from . import run


@pytest.fixture
def volume(tmp_path):
    def make(name: str = "vol", files: dict[str, str] | None = None):
        folder = tmp_path / "cache" / name / "tree"
        folder.mkdir(parents=True, exist_ok=True)
        for path, text in (files or {}).items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(text)
        return folder

    return make


def test_a_relative_mount_is_a_symlink_in_the_working_directory(tmp_path, volume):
    host = volume(files={"a.txt": "A"})
    link_mounts([Mount(host, "data", False)], tmp_path / "work")
    link = tmp_path / "work" / "data"
    assert link.is_symlink() and os.readlink(link) == str(host)
    assert (link / "a.txt").read_text() == "A"


def test_a_nested_relative_mount_path_gets_its_intermediate_folders(tmp_path, volume):
    host = volume()
    link_mounts([Mount(host, "inputs/raw files", True)], tmp_path)
    assert (tmp_path / "inputs").is_dir() and not (tmp_path / "inputs").is_symlink()
    assert (tmp_path / "inputs" / "raw files").resolve() == host


@pytest.mark.parametrize("language, script", [
    ("python", "def main():\n    open('out/result.txt', 'w').write('written')\n    return sorted(__import__('os').listdir('out'))\n"),
    ("bash", "echo written > out/result.txt\nls out | tr '\\n' ' '\n"),
    ("typescript", "import fs from 'node:fs';\nexport function main() { fs.writeFileSync('out/result.txt', 'written\\n'); return fs.readdirSync('out'); }\n"),
])
def test_a_script_writes_into_its_relative_mount_and_the_file_appears_in_the_volume(tmp_path, volume, language, script):
    host = volume(files={"old.txt": "old"})
    outcome = run(language, script, tmp_path / "work", mounts=[Mount(host, "out", False)])
    assert outcome.error == ""
    assert (host / "result.txt").read_text().strip() == "written"
    assert "old.txt" in str(outcome.result.result)


def test_an_absolute_mount_path_is_refused_without_sandbox(tmp_path, volume):
    with pytest.raises(InvalidPath, match="absolute mount paths need the `sandbox` annotation"):
        run("python", "def main():\n    return 1\n", tmp_path, mounts=[Mount(volume(), "/data/x", False)])
    assert not (tmp_path / ".volumes-runner").exists()  # refused before anything ran


@pytest.mark.parametrize("path", ["/etc/x", "/tmp", "/data", "/usr/local/x", "/datax/y"])
def test_an_absolute_mount_path_outside_the_allowed_folders_is_refused_in_the_sandbox(volume, path):
    with pytest.raises(InvalidPath, match="must be relative or lie under one of"):
        check_mounts([Mount(volume(), path, False)], sandbox=True)


@pytest.mark.parametrize("path", ["../x", "a/../../b", "/data/../etc"])
def test_a_mount_path_with_dot_dot_is_refused(volume, path):
    with pytest.raises(InvalidPath, match="'..'"):
        check_mounts([Mount(volume(), path, False)], sandbox=True)


@pytest.mark.parametrize("path", ["", ".", "  "])
def test_an_empty_mount_path_is_refused(volume, path):
    with pytest.raises(InvalidPath):
        check_mounts([Mount(volume(), path, False)], sandbox=False)


def test_the_runner_folder_cannot_be_a_mount_path(volume):
    with pytest.raises(InvalidPath, match="reserved"):
        check_mounts([Mount(volume(), ".volumes-runner/x", False)], sandbox=False)
    with pytest.raises(InvalidPath, match="reserved"):
        check_mounts([Mount(volume(), "/tmp/.volumes-runner", False)], sandbox=True)


def test_two_volumes_at_the_same_path_are_refused(volume):
    with pytest.raises(InvalidPath, match="same path"):
        check_mounts([Mount(volume("a"), "data", False), Mount(volume("b"), "./data", True)], sandbox=False)
    with pytest.raises(InvalidPath, match="same path"):
        check_mounts([Mount(volume("c"), "data", False), Mount(volume("d"), "/tmp/data", True)], sandbox=True)


def test_a_volume_inside_another_volume_is_refused(volume):
    with pytest.raises(InvalidPath, match="'data/inner' lies inside mount path 'data'"):
        check_mounts([Mount(volume("a"), "data", False), Mount(volume("b"), "data/inner", True)], sandbox=False)
    with pytest.raises(InvalidPath, match="volumes cannot be nested"):
        check_mounts([Mount(volume("c"), "/data/x/y", False), Mount(volume("d"), "/data/x", True)], sandbox=True)


def test_a_volume_whose_folder_is_missing_is_refused(tmp_path):
    with pytest.raises(InvalidPath, match="does not exist"):
        check_mounts([Mount(tmp_path / "nowhere", "data", False)], sandbox=False)


def test_an_existing_file_in_the_working_directory_is_not_replaced_by_a_mount(tmp_path, volume):
    (tmp_path / "data").write_text("mine")
    with pytest.raises(InvalidPath, match="already exists"):
        link_mounts([Mount(volume(), "data", False)], tmp_path)
    assert (tmp_path / "data").read_text() == "mine"


@pytest.mark.parametrize("path, cwd, target", [
    ("data", "/tmp", "/tmp/data"),
    ("a/b c", "/tmp/bun", "/tmp/bun/a/b c"),
    ("data", "/tmp/deno", "/tmp/deno/data"),
    ("/data/x", "/tmp/bun", "/data/x"),
    ("/mnt/models/", "/tmp", "/mnt/models"),
])
def test_sandbox_targets_resolve_relative_paths_against_the_sandbox_working_directory(tmp_path, path, cwd, target):
    assert sandbox_target(Mount(tmp_path, path, False), cwd) == target
