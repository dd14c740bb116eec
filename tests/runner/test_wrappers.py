"""Each language's calling convention, without sandbox: results, args, output, errors, stopping."""
from __future__ import annotations

import threading
import time

import pytest

from volumes.exceptions import VolumesError

from . import processes_with, run

VALUES = [{"a": 1, "b": [True, None]}, [1, "two", 3.5], "text", 42]


@pytest.mark.parametrize("value", VALUES, ids=["dict", "list", "string", "number"])
def test_a_python_main_returns_its_value_as_the_result(tmp_path, value):
    assert run("python", f"def main():\n    return {value!r}\n", tmp_path).value == value


@pytest.mark.parametrize("value", VALUES, ids=["dict", "list", "string", "number"])
@pytest.mark.parametrize("language", ["typescript", "javascript"])
def test_a_js_main_returns_its_value_as_the_result(tmp_path, language, value):
    import json

    assert run(language, f"export async function main() {{ return {json.dumps(value)}; }}\n", tmp_path).value == value


@pytest.mark.parametrize("value", VALUES, ids=["dict", "list", "string", "number"])
def test_a_bash_script_returns_its_last_line_parsed_as_json(tmp_path, value):
    import json

    script = f"echo 'some progress'\necho {json.dumps(json.dumps(value))}\necho\n"
    assert run("bash", script, tmp_path).value == value


def test_a_bash_result_that_is_not_json_is_kept_as_the_raw_string(tmp_path):
    assert run("bash", "echo first\necho '3 files copied'\n", tmp_path).value == "3 files copied"


def test_a_bash_script_without_output_returns_none(tmp_path):
    assert run("bash", "true\n", tmp_path).value is None


def test_python_gets_the_args_by_name(tmp_path):
    script = "def main(greeting, name, times=1):\n    return f'{greeting}, {name}' * times\n"
    assert run("python", script, tmp_path, {"name": "Ada", "greeting": "Hello"}).value == "Hello, Ada"


@pytest.mark.parametrize("language", ["typescript", "javascript"])
def test_js_gets_the_args_by_their_parameter_names(tmp_path, language):
    typed = ": string" if language == "typescript" else ""
    script = f"export async function main(greeting{typed}, name{typed}, times = 1) {{ return `${{greeting}}, ${{name}}`.repeat(times); }}\n"
    assert run(language, script, tmp_path, {"name": "Ada", "greeting": "Hello"}).value == "Hello, Ada"


def test_js_gets_the_args_object_when_main_destructures_it(tmp_path):
    script = "export const main = async ({ name, greeting = 'Hi' }) => `${greeting}, ${name}`;\n"
    assert run("typescript", script, tmp_path, {"name": "Ada"}).value == "Hi, Ada"


def test_js_refuses_an_arg_that_is_no_parameter_of_main(tmp_path):
    outcome = run("javascript", "export function main(a) { return a; }\n", tmp_path, {"a": 1, "b": 2})
    assert outcome.result.exit_code != 0
    assert 'no parameter named "b"' in outcome.error


def test_bash_gets_the_args_as_positional_parameters_and_environment_variables(tmp_path):
    script = 'echo "$1|$2|$3"\necho "$ARG_NAME|$ARG_MAX_COUNT|$ARG_DRY_RUN|$name"\necho "$ARG_A_B|${PATH:+path kept}"\n'
    outcome = run("bash", script, tmp_path, {"name": "Ada Lovelace", "max_count": 3, "dry-run": True, "a.b": {"x": 1}})
    assert outcome.lines[0] == 'Ada Lovelace|3|true'
    assert outcome.lines[1] == "Ada Lovelace|3|true|Ada Lovelace"
    assert outcome.lines[2] == '{"x": 1}|path kept'


def test_a_bash_arg_never_replaces_an_existing_environment_variable(tmp_path):
    assert run("bash", 'echo "$PATH"\n', tmp_path, {"PATH": "/nowhere"}).value != "/nowhere"


@pytest.mark.parametrize(
    "language, script",
    [
        ("python", "import sys\ndef main():\n    print('to stdout')\n    print('to stderr', file=sys.stderr)\n    return 1\n"),
        ("bash", "echo 'to stdout'\necho 'to stderr' >&2\n"),
        ("typescript", "export function main() { console.log('to stdout'); console.error('to stderr'); return 1; }\n"),
        ("javascript", "export function main() { console.log('to stdout'); console.error('to stderr'); return 1; }\n"),
    ],
)
def test_what_a_script_prints_to_stdout_and_stderr_appears_in_the_log(tmp_path, language, script):
    outcome = run(language, script, tmp_path)
    assert outcome.error == ""
    assert outcome.lines.index("to stdout") < outcome.lines.index("to stderr")


def test_output_streams_into_the_log_while_the_script_runs(tmp_path):
    seen: list[tuple[float, str]] = []
    script = "import time\ndef main():\n    print('early')\n    time.sleep(0.6)\n    return 1\n"
    from volumes.runner import run_script

    result = run_script("python", script, {}, [], sandbox=False, workdir=tmp_path,
                        log=lambda line: seen.append((time.time(), line)))
    assert seen and seen[0][1] == "early"
    assert result.finished_at - seen[0][0] > 0.4


def test_the_result_file_keeps_prints_out_of_the_python_result(tmp_path):
    outcome = run("python", "def main():\n    print('[1, 2]')\n    return {'ok': True}\n", tmp_path)
    assert outcome.value == {"ok": True}
    assert "[1, 2]" in outcome.lines


@pytest.mark.parametrize(
    "language, script",
    [
        ("python", "def main():\n    raise ValueError('the input is empty')\n"),
        ("typescript", "export async function main() { throw new RangeError('the input is empty'); }\n"),
        ("javascript", "export function main() { throw new TypeError('the input is empty'); }\n"),
    ],
)
def test_an_exception_fails_the_run_with_its_type_and_message(tmp_path, language, script):
    outcome = run(language, script, tmp_path)
    assert outcome.result.exit_code != 0
    assert outcome.error.endswith("Error: the input is empty")
    assert outcome.result.result is None
    assert "the input is empty" in outcome.log  # the traceback / stack went to stderr


def test_a_python_traceback_goes_to_the_log(tmp_path):
    outcome = run("python", "def helper():\n    1 / 0\n\ndef main():\n    helper()\n", tmp_path)
    assert outcome.error == "ZeroDivisionError: division by zero"
    assert "Traceback (most recent call last):" in outcome.lines
    assert any("in helper" in line for line in outcome.lines)


@pytest.mark.parametrize(
    "language, script",
    [
        ("python", "import sys\ndef main():\n    sys.exit(3)\n"),
        ("bash", "echo working\nexit 3\n"),
        ("typescript", "export function main() { process.exit(3); }\n"),
        ("javascript", "export function main() { process.exit(3); }\n"),
    ],
)
def test_a_non_zero_exit_fails_the_run_with_the_exit_code(tmp_path, language, script):
    outcome = run(language, script, tmp_path)
    assert outcome.result.exit_code == 3
    assert outcome.error.startswith("exited with code 3")


def test_a_non_zero_exit_names_the_last_error_line(tmp_path):
    outcome = run("bash", "echo 'config.yaml is missing' >&2\nexit 2\n", tmp_path)
    assert outcome.error == "exited with code 2: config.yaml is missing"


def test_a_python_result_that_is_not_json_fails_clearly(tmp_path):
    outcome = run("python", "def main():\n    return {1, 2}\n", tmp_path)
    assert outcome.result.exit_code != 0
    assert outcome.error == "the result is not JSON-serialisable: Object of type set is not JSON serializable"


def test_a_js_result_that_is_not_json_fails_clearly(tmp_path):
    outcome = run("typescript", "export function main() { return 10n; }\n", tmp_path)
    assert outcome.error.startswith("the result is not JSON-serialisable")


@pytest.mark.parametrize(
    "language, script, message",
    [
        ("python", "def run():\n    return 1\n", "the script defines no main() function"),
        ("typescript", "export function run() { return 1; }\n", "the script exports no main function"),
    ],
)
def test_a_script_without_main_fails_clearly(tmp_path, language, script, message):
    assert run(language, script, tmp_path).error.startswith(message)


def test_python_main_is_imported_not_run_as_a_script(tmp_path):
    script = "def main():\n    return __name__\n\nif __name__ == '__main__':\n    raise SystemExit('ran as __main__')\n"
    assert run("python", script, tmp_path).value == "main"


def test_a_python_syntax_error_fails_clearly(tmp_path):
    assert run("python", "def main(:\n", tmp_path).error.startswith("SyntaxError:")


def test_a_js_syntax_error_fails_the_run(tmp_path):
    outcome = run("typescript", "export function main( { \n", tmp_path)
    assert outcome.result.exit_code != 0 and outcome.error


def test_the_script_runs_in_the_working_directory(tmp_path):
    assert run("python", "import os\ndef main():\n    return os.getcwd()\n", tmp_path).value == str(tmp_path)
    assert run("bash", "pwd\n", tmp_path / "b").value == str(tmp_path / "b")


def test_the_caller_env_reaches_the_script(tmp_path):
    assert run("bash", 'echo "$JOB_ID"\n', tmp_path, env={"JOB_ID": "17"}).value == 17


def test_an_unknown_language_is_refused(tmp_path):
    with pytest.raises(VolumesError, match="unknown language 'ruby'"):
        run("ruby", "puts 1", tmp_path)


def test_the_times_cover_the_script_process(tmp_path):
    before = time.time()
    result = run("bash", "sleep 0.2\n", tmp_path).result
    assert before <= result.started_at < result.finished_at <= time.time()
    assert result.finished_at - result.started_at >= 0.2


@pytest.mark.parametrize("language", ["python", "bash", "typescript"])
def test_the_stop_event_kills_the_script_and_its_children_within_two_seconds(tmp_path, language):
    marker = f"61.{time.time_ns() % 10**9}"
    script = {
        "python": f"import subprocess, time\ndef main():\n    subprocess.Popen(['sleep', '{marker}'])\n    time.sleep(60)\n",
        "bash": f"sleep {marker} &\nsleep 60\n",
        "typescript": f"import {{ spawn }} from 'node:child_process';\n"
                      f"export async function main() {{ spawn('sleep', ['{marker}']); await new Promise(r => setTimeout(r, 60000)); }}\n",
    }[language]
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    outcome = run(language, script, tmp_path, stop=stop, stop_reason=lambda: "lease lost")
    assert outcome.error == "lease lost"
    assert outcome.seconds < 2.5
    time.sleep(0.1)
    assert processes_with(marker) == []


def test_a_stop_event_set_before_the_start_runs_nothing(tmp_path):
    stop = threading.Event()
    stop.set()
    outcome = run("bash", "touch ran\n", tmp_path, stop=stop, stop_reason=lambda: "cancelled")
    assert outcome.error == "cancelled"
    assert not (tmp_path / "ran").exists()


def test_a_script_running_past_the_timeout_is_killed(tmp_path):
    outcome = run("python", "import time\ndef main():\n    time.sleep(60)\n", tmp_path, timeout=0.5)
    assert outcome.error == "timed out after 0.5 s"
    assert outcome.seconds < 2


class TestDeno:
    """Bun is preferred; VOLUMES_JS_RUNTIME=deno runs the same conventions with Deno."""

    @pytest.fixture(autouse=True)
    def deno(self, monkeypatch):
        from volumes.runner.wrappers import TOOLS_BIN

        if not (TOOLS_BIN / "deno").exists():
            pytest.fail("deno is not installed in .tools: run scripts/install_tools.sh")
        monkeypatch.setenv("VOLUMES_JS_RUNTIME", "deno")

    def test_deno_gets_the_args_by_name_and_returns_the_result(self, tmp_path):
        script = "export async function main(name: string, n: number = 2): Promise<object> { console.log('hi'); return { name, n }; }\n"
        outcome = run("typescript", script, tmp_path, {"name": "Ada"})
        assert outcome.value == {"name": "Ada", "n": 2}
        assert outcome.lines == ["hi"]

    def test_deno_reports_a_thrown_error(self, tmp_path):
        outcome = run("javascript", "export function main() { throw new Error('no way'); }\n", tmp_path)
        assert outcome.error == "Error: no way"
