"""How a script of each language is called, and how its result comes back.

Every language writes its files into a runner folder (`<workdir>/.volumes-runner`, or
`/tmp/.volumes-runner` in the sandbox) and runs with the job's working directory as cwd.

Python (`main.py`): a wrapper imports the script as the module `main` (so `if __name__ ==
"__main__":` blocks do not run), calls `main(**args)` with the args by name, and writes
`json.dumps(result)` to a result file, never to stdout, so prints do not mix with the result.
An exception prints its traceback to stderr and fails the run with `"<Type>: <message>"`; a result
that is not JSON (a set, NaN, an object) fails with `the result is not JSON-serialisable: ...`; a
script without a `main` function fails with a message saying so. `sys.exit(n)` ends the run with
code n (0: success with result None). Unbuffered (`-u`), no bytecode files (`-B`). Without the
sandbox the interpreter is the worker's own (`sys.executable`), in the sandbox `/usr/bin/python3`.

Bash (`main.sh`): the args are the positional parameters `$1 $2 ...`, in the key order of the args
dict, strings as they are and other values JSON-encoded (`3`, `true`, `null`, `{"a": 1}`). They
are also environment variables `ARG_<NAME>` (name upper-cased, characters other than letters,
digits and `_` replaced by `_`), and by their plain name when that is a valid shell identifier not
already present in the script's environment (so an arg can never replace PATH or HOME). The result
is the last non-empty line of stdout: parsed as JSON when it is JSON (`42`, `{"a": 1}`, `"text"`),
otherwise kept as the raw string (`done`, `3 files copied`). No output: result None. A non-zero
exit code fails the run.

TypeScript and JavaScript (`main.ts`, `main.js`): the script has `export async function main(...)`
(or `export function main`, `export const main = (...) => ...`, or a default-exported function).
It runs with Bun (preferred: `.tools/node_modules/.bin/bun` of the project, then `bun` on PATH),
else Deno (`deno run -A`); the environment variable VOLUMES_JS_RUNTIME=bun|deno forces one. A
wrapper module imports the script and maps the args by name: it reads the declared parameter names
from `main.toString()` and passes the values positionally in that order (a missing arg is
`undefined`, so a default value applies; an arg that is no parameter fails the run, as in Python).
When the parameters use destructuring or a rest parameter (`main({a, b})`, `main(...all)`), it
passes the whole args object as the only argument instead. The result goes to the result file as
`JSON.stringify(result)` (`undefined` becomes null; a BigInt or a cycle fails the run; Map and Set
become `{}` as JSON.stringify does). A thrown error prints to stderr and fails the run with
`"<Name>: <message>"`; `process.exit(n)` ends the run with code n. After main returns the wrapper
exits, so open timers or sockets do not keep the job alive.

The result file holds `{"result": <value>}` or `{"error": "<one line>"}`, written by the wrapper.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import VolumesError
from .mounts import RUNNER_DIR

LANGUAGES = ("python", "bash", "typescript", "javascript")
SCRIPT_FILES = {"python": "main.py", "bash": "main.sh", "typescript": "main.ts", "javascript": "main.js"}
PROJECT_DIR = Path(__file__).resolve().parents[2]
TOOLS_BIN = PROJECT_DIR / ".tools" / "node_modules" / ".bin"
SANDBOX_PYTHON = "/usr/bin/python3"
SANDBOX_BASH = "/bin/bash"
MAX_ERROR = 500


class RuntimeMissing(VolumesError):
    """The interpreter of the script's language is not installed on this worker."""

    code = "runtime_missing"
    status = 503


@dataclass(frozen=True)
class Runtime:
    kind: str  # "python" | "bash" | "bun" | "deno"
    executable: Path  # on the host

    @property
    def sandbox_cwd(self) -> str:
        return {"bun": "/tmp/bun", "deno": "/tmp/deno"}.get(self.kind, "/tmp")


@dataclass(frozen=True)
class Program:
    argv: list[str]  # paths as the process sees them
    result_file: Path | None  # host path; None: the result is the last line of stdout
    env: dict[str, str] = field(default_factory=dict)


def one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 3] + "..."


def _js_runtime() -> Runtime:
    forced = os.environ.get("VOLUMES_JS_RUNTIME", "").strip().lower()
    kinds = [forced] if forced in ("bun", "deno") else ["bun", "deno"]
    for kind in kinds:
        for candidate in (TOOLS_BIN / kind, shutil.which(kind)):
            if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
                return Runtime(kind, Path(candidate))
    raise RuntimeMissing(
        f"TypeScript and JavaScript need {' or '.join(kinds)}: run scripts/install_tools.sh "
        f"(it installs them into {TOOLS_BIN})"
    )


def find_runtime(language: str, *, sandbox: bool) -> Runtime:
    if language == "python":
        if sandbox:
            if not Path(SANDBOX_PYTHON).is_file():
                raise RuntimeMissing(f"sandboxed Python runs {SANDBOX_PYTHON}, which this worker does not have")
            return Runtime("python", Path(SANDBOX_PYTHON))
        return Runtime("python", Path(sys.executable))
    if language == "bash":
        bash = SANDBOX_BASH if sandbox else (shutil.which("bash") or SANDBOX_BASH)
        if not Path(bash).is_file():
            raise RuntimeMissing("Bash scripts need bash, which this worker does not have")
        return Runtime("bash", Path(bash))
    if language in ("typescript", "javascript"):
        return _js_runtime()
    raise VolumesError(f"unknown language {language!r}; use one of {', '.join(LANGUAGES)}")


def _bash_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _bash_env(args: dict, environment: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in args.items():
        env["ARG_" + re.sub(r"[^A-Za-z0-9_]", "_", str(name)).upper()] = _bash_value(value)
    for name, value in args.items():
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)) and name not in environment and name not in env:
            env[name] = _bash_value(value)
    return env


def write_program(
    language: str, content: str, args: dict, runtime: Runtime, *, files_dir: Path, files_dir_inside: str,
    executable: str, environment: dict[str, str],
) -> Program:
    """Write the script (and wrapper, args) into `files_dir`; `*_inside` are the same paths as the process sees them.

    `environment` is the environment the script will get, to keep Bash args from shadowing it."""
    files_dir.mkdir(parents=True, exist_ok=True)
    script_name = SCRIPT_FILES[language]
    (files_dir / script_name).write_text(content)
    inside = lambda name: f"{files_dir_inside}/{name}"  # noqa: E731
    if language == "bash":
        values = [_bash_value(value) for value in args.values()]
        return Program([executable, inside(script_name), *values], None, _bash_env(args, environment))
    (files_dir / "args.json").write_text(json.dumps(args))
    result_file = files_dir / "result.json"
    if language == "python":
        (files_dir / "_volumes_wrapper.py").write_text(PYTHON_WRAPPER)
        argv = [executable, "-u", "-B", inside("_volumes_wrapper.py")]
        return Program([*argv, inside(script_name), inside("args.json"), inside("result.json")], result_file)
    (files_dir / "_volumes_wrapper.mjs").write_text(JS_WRAPPER)
    if runtime.kind == "bun":
        argv = [executable, inside("_volumes_wrapper.mjs")]
        env = {"BUN_RUNTIME_TRANSPILER_CACHE_PATH": "0"}
    else:
        argv = [executable, "run", "-A", "--no-prompt", "--no-config", "--quiet", inside("_volumes_wrapper.mjs")]
        env = {"DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"}
    return Program([*argv, inside(script_name), inside("args.json"), inside("result.json")], result_file, env)


def read_outcome(program: Program, exit_code: int, last_stdout: str, last_stderr: str) -> tuple[Any, str]:
    """(result, error) of a finished run; error is '' on success."""
    failed = _exit_error(exit_code, last_stderr)
    if program.result_file is None:  # Bash
        if failed:
            return None, failed
        if not last_stdout.strip():
            return None, ""
        try:
            return json.loads(last_stdout), ""
        except ValueError:
            return last_stdout.strip(), ""
    try:
        text = program.result_file.read_text()
    except FileNotFoundError:
        return None, failed  # sys.exit(n) / process.exit(n) inside main: no result
    except (OSError, UnicodeDecodeError) as error:
        return None, failed or f"the result file could not be read: {error}"
    try:
        record = json.loads(text)
        if not isinstance(record, dict) or not ({"result"} == record.keys() or {"error"} == record.keys()):
            raise ValueError("not a result record")
    except ValueError:
        return None, failed or f"result is not JSON: {one_line(text)}"
    if "error" in record:
        return None, one_line(record["error"]) or failed or "the script failed"
    return (None, failed) if failed else (record["result"], "")


def _exit_error(code: int, last_stderr: str) -> str:
    if code == 0:
        return ""
    if code < 0:
        import signal

        try:
            reason = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            reason = f"killed by signal {-code}"
    else:
        reason = f"exited with code {code}"
    detail = one_line(last_stderr)
    return f"{reason}: {detail}" if detail else reason


PYTHON_WRAPPER = r'''"""Runs main(**args) of the job's script and writes its JSON result (written by volumes.runner)."""
import importlib.util
import json
import sys
import traceback


def _one_line(text):
    text = " ".join(str(text).split())
    return text if len(text) <= 500 else text[:497] + "..."


def _write(path, text):
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)


def _run():
    script, args_file, result_file = sys.argv[1:4]
    with open(args_file, encoding="utf-8") as handle:
        args = json.load(handle)
    sys.argv = [script]

    def fail(message, code=1):
        _write(result_file, json.dumps({"error": message}))
        sys.exit(code)

    try:
        spec = importlib.util.spec_from_file_location("main", script)
        module = importlib.util.module_from_spec(spec)
        sys.modules["main"] = module
        spec.loader.exec_module(module)
        main = getattr(module, "main", None)
        if not callable(main):
            fail("the script defines no main() function; define `def main(...)` that takes the args by name", 2)
        result = main(**args)
    except Exception as error:  # SystemExit and KeyboardInterrupt pass through
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        message = _one_line(error)
        fail(f"{type(error).__name__}: {message}" if message else type(error).__name__)
    try:
        text = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as error:
        fail(f"the result is not JSON-serialisable: {_one_line(error)}")
    _write(result_file, '{"result": ' + text + "}")


_run()
'''

JS_WRAPPER = r'''// Runs main(...) of the job's script and writes its JSON result (written by volumes.runner).
import fs from "node:fs";
import process from "node:process";
import { pathToFileURL } from "node:url";

const [scriptPath, argsPath, resultPath] = process.argv.slice(2);

function oneLine(text) {
  const line = String(text).split(/\s+/).filter(Boolean).join(" ");
  return line.length <= 500 ? line : line.slice(0, 497) + "...";
}

function describe(error) {
  if (error instanceof Error) {
    const message = oneLine(error.message);
    return message ? `${error.name}: ${message}` : error.name;
  }
  let text;
  try { text = typeof error === "string" ? error : JSON.stringify(error); } catch { text = String(error); }
  return `thrown: ${oneLine(text)}`;
}

function finish(text, code) {
  fs.writeFileSync(resultPath, text);
  process.exit(code);
}

function fail(message, code = 1) {
  finish(JSON.stringify({ error: message }), code);
}

// The declared parameter names of fn, or null when it destructures or takes a rest parameter.
function parameterNames(fn) {
  let source = Function.prototype.toString.call(fn).trim().replace(/^async\s+/, "");
  if (source.startsWith("function")) {
    source = source.slice(source.indexOf("("));
  } else if (!source.startsWith("(")) {
    const single = /^([A-Za-z_$][\w$]*)\s*=>/.exec(source);
    if (single) return [single[1]];
    source = source.slice(source.indexOf("("));  // a method: main(a, b) { ... }
  }
  const params = [];
  let depth = 0, current = "";
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === "'" || c === '"' || c === "`") {
      let j = i + 1;
      while (j < source.length && source[j] !== c) j += source[j] === "\\" ? 2 : 1;
      current += source.slice(i, j + 1);
      i = j;
      continue;
    }
    if (c === "/" && source[i + 1] === "/") { i = source.indexOf("\n", i); if (i < 0) break; continue; }
    if (c === "/" && source[i + 1] === "*") { i = source.indexOf("*/", i) + 1; if (i <= 0) break; continue; }
    if ("([{".includes(c)) { depth++; if (depth === 1) continue; }
    if (")]}".includes(c)) { depth--; if (depth === 0) { params.push(current); break; } }
    if (c === "," && depth === 1) { params.push(current); current = ""; continue; }
    current += c;
  }
  const names = [];
  for (const param of params.map((p) => p.trim()).filter(Boolean)) {
    if (/^[\[{]|^\.\.\./.test(param)) return null;
    const name = /^[A-Za-z_$][\w$]*/.exec(param);
    if (!name) return null;
    names.push(name[0]);
  }
  return names;
}

const args = JSON.parse(fs.readFileSync(argsPath, "utf8"));
let main;
try {
  const module = await import(pathToFileURL(scriptPath).href);
  main = typeof module.main === "function" ? module.main : module.default;
} catch (error) {
  console.error(error);
  fail(describe(error));
}
if (typeof main !== "function") {
  fail("the script exports no main function; add `export async function main(...)`", 2);
}
const names = parameterNames(main);
let callArgs = [args];
if (names !== null) {
  const unknown = Object.keys(args).filter((key) => !names.includes(key));
  if (unknown.length) {
    fail(`TypeError: main() has no parameter named ${unknown.map((k) => JSON.stringify(k)).join(", ")}`);
  }
  callArgs = names.map((name) => args[name]);
}
let result;
try {
  result = await main(...callArgs);
} catch (error) {
  console.error(error);
  fail(describe(error));
}
let text;
try {
  text = JSON.stringify(result === undefined ? null : result);
} catch (error) {
  fail(`the result is not JSON-serialisable: ${oneLine(error && error.message ? error.message : error)}`);
}
if (text === undefined) fail(`the result is not JSON-serialisable: a ${typeof result}`);
finish(`{"result": ${text}}`, 0);
'''
