"""Volume annotations: the leading comment block, its rules, interpolation, and properties (no database)."""
from __future__ import annotations

import posixpath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from volumes.annotations import (
    LANGUAGES,
    VOLUME_NAME_RE,
    ResolvedMount,
    ScriptAnnotations,
    VolumeSpec,
    is_valid_volume_name,
    language_for_filename,
    parse,
    resolve,
    validate_volume_name,
)
from volumes.exceptions import AnnotationError

ALL_LANGUAGES = sorted(LANGUAGES)  # bash, javascript, python, typescript
ONE_PER_PREFIX = ["python", "typescript"]  # '#' and '//': the big tables run once per comment prefix
ROOTS = ("/tmp/", "/mnt/", "/opt/", "/home/", "/data/")
FAST = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def script(language: str, *lines: str) -> str:
    """Join lines, writing the language's comment prefix wherever a line says '{c}'."""
    return "\n".join(line.replace("{c}", LANGUAGES[language]) for line in lines) + "\n"


def refused(content: str, language: str, line: int, *fragments: str) -> AnnotationError:
    """Assert that parsing fails on `line` with every fragment in the message."""
    with pytest.raises(AnnotationError) as info:
        parse(content, language)
    error = info.value
    assert error.line == line
    assert str(error).startswith(f"line {line}: ")
    for fragment in fragments:
        assert fragment in str(error)
    return error


def mounts(annotations: ScriptAnnotations) -> list[tuple[str, str]]:
    return [(v.name_template, v.mount_path) for v in annotations.volumes]


# --- languages ---------------------------------------------------------------------------------


def test_it_maps_each_language_to_its_comment_prefix():
    assert LANGUAGES == {"python": "#", "bash": "#", "typescript": "//", "javascript": "//"}


@pytest.mark.parametrize(
    "filename, language",
    [("job.py", "python"), ("run.sh", "bash"), ("main.ts", "typescript"), ("main.js", "javascript"),
     ("dir/sub.v2/x.py", "python"), ("SHOUT.PY", "python")],
)
def test_it_tells_the_language_from_the_file_extension(filename, language):
    assert language_for_filename(filename) == language


@pytest.mark.parametrize("filename", ["job.rb", "job", "job.py.txt", ".bashrc", "job.tsx", ""])
def test_it_refuses_a_file_extension_it_does_not_know_and_lists_the_ones_it_does(filename):
    with pytest.raises(AnnotationError, match=r"\.py, \.sh, \.ts or \.js"):
        language_for_filename(filename)


def test_it_refuses_an_unknown_language_and_names_the_known_ones():
    with pytest.raises(AnnotationError, match="bash, javascript, python, typescript"):
        parse("# volume: data d\n", "ruby")


# --- reading the block -------------------------------------------------------------------------


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_it_reads_the_example_from_the_product_spec(language):
    content = script(
        language,
        "{c} sandbox",
        "{c} volume: training-data /tmp/data",
        "{c} volume: $workspace-cache cache",
        "def main(env: str): ...",
    )
    assert parse(content, language) == ScriptAnnotations(
        volumes=(VolumeSpec("training-data", "/tmp/data", 2), VolumeSpec("$workspace-cache", "cache", 3)),
        sandbox=True,
    )


GOOD = [
    # (lines, expected (name_template, mount_path) pairs, sandbox)
    (["{c} volume: data d"], [("data", "d")], False),
    (["{c}volume:data d"], [("data", "d")], False),
    (["{c}volume: data d"], [("data", "d")], False),
    (["   {c}   volume:   data    d   "], [("data", "d")], False),
    (["{c} volume:\tdata\td"], [("data", "d")], False),
    (["{c} volume: data my data dir"], [("data", "my data dir")], False),
    (["{c} volume: data  spaced  /  path "], [("data", "spaced  /  path")], False),
    (["{c} volume: data ./d/"], [("data", "d")], False),
    (["{c} volume: data a/../b"], [("data", "b")], False),
    (["{c} volume: data a//b/./c/"], [("data", "a/b/c")], False),
    (["{c} volume: data .hidden"], [("data", ".hidden")], False),
    (["{c} volume: data a/~"], [("data", "a/~")], False),
    (["{c} volume: data données"], [("data", "données")], False),
    (["{c} volume: data $HOME"], [("data", "$HOME")], False),
    (["{c} sandbox", "{c} volume: data /tmp/x"], [("data", "/tmp/x")], True),
    (["{c} volume: data /mnt/x", "{c} sandbox"], [("data", "/mnt/x")], True),
    (["{c} volume: aa /opt/x", "{c} sandbox", "{c} volume: bb /home/u/x"],
     [("aa", "/opt/x"), ("bb", "/home/u/x")], True),
    (["{c} sandbox", "{c} volume: data //data//x/./y/"], [("data", "/data/x/y")], True),
    (["{c} sandbox", "{c} volume: data /tmp/a/../b"], [("data", "/tmp/b")], True),
    (["{c} sandbox", "{c} volume: data relative"], [("data", "relative")], True),
    (["{c} sandbox"], [], True),
    (["{c} sandbox", "{c} sandbox"], [], True),
    (["", "", "{c} volume: aa x", "", "   ", "{c} volume: bb y"], [("aa", "x"), ("bb", "y")], False),
    (["{c} helper script", "{c} volume: data d", "{c} TODO: more"], [("data", "d")], False),
    (["{c} volumetric flow, sandboxed", "{c} volume-related notes", "{c} timeout: 5"], [], False),
    (["{c} the volume: is not at the start", "{c} {c} volume: nested comment is text"], [], False),
    (["{c} volume: aa x", "code()", "{c} volume: bb y"], [("aa", "x")], False),
    (["{c} volume: aa x", "code()", "{c} sandbox", "{c} Volume: ignored after code"], [("aa", "x")], False),
    (["code()", "{c} volume: aa x"], [], False),
    (["{c} volume: $workspace-cache c"], [("$workspace-cache", "c")], False),
    (["{c} volume: $args[env]-db c"], [("$args[env]-db", "c")], False),
    (["{c} volume: $args[cfg.region.name].$workspace c"], [("$args[cfg.region.name].$workspace", "c")], False),
    (["{c} volume: $args[env] a", "{c} volume: $args[Env] b"], [("$args[env]", "a"), ("$args[Env]", "b")], False),
    ([f"{{c}} volume: v{i:02d} d{i}" for i in range(10)], [(f"v{i:02d}", f"d{i}") for i in range(10)], False),
    ([], [], False),
]


@pytest.mark.parametrize("language", ONE_PER_PREFIX)
@pytest.mark.parametrize("lines, expected, sandbox", GOOD)
def test_it_accepts_well_formed_annotations(language, lines, expected, sandbox):
    annotations = parse(script(language, *lines), language)
    assert mounts(annotations) == expected
    assert annotations.sandbox is sandbox


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_it_records_the_line_number_of_each_volume_counting_blank_lines(language):
    content = script(language, "", "{c} intro", "", "{c} volume: aa x", "", "{c} volume: bb y")
    assert [v.line for v in parse(content, language).volumes] == [4, 6]


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_it_skips_a_shebang_on_the_first_line(language):
    content = script(language, "#!/usr/bin/env run", "{c} volume: data d")
    assert mounts(parse(content, language)) == [("data", "d")]


@pytest.mark.parametrize("language", ["typescript", "javascript"])
def test_it_ends_the_block_at_a_shebang_that_is_not_on_the_first_line(language):
    content = script(language, "// volume: aa x", "#!/usr/bin/env node", "// volume: bb y")
    assert mounts(parse(content, language)) == [("aa", "x")]


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_it_reads_windows_line_endings_and_a_byte_order_mark(language):
    content = "\ufeff" + script(language, "{c} sandbox", "{c} volume: data /tmp/d").replace("\n", "\r\n")
    annotations = parse(content, language)
    assert mounts(annotations) == [("data", "/tmp/d")] and annotations.sandbox


@pytest.mark.parametrize(
    "language, other", [("python", "//"), ("bash", "//"), ("typescript", "#"), ("javascript", "#")]
)
def test_it_treats_the_other_languages_comment_prefix_as_code(language, other):
    content = f"{other} volume: aa x\n{LANGUAGES[language]} volume: bb y\n"
    assert parse(content, language).volumes == ()


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_it_ignores_malformed_annotations_after_the_first_code_line(language):
    content = script(language, "{c} volume: data d", "run()", "{c} volume:", "{c} volume: x /etc", "{c} sandbox yes")
    assert mounts(parse(content, language)) == [("data", "d")]


# --- refusing ----------------------------------------------------------------------------------

BAD = [
    # (lines, line of the error, fragments the message must contain)
    (["{c} volume:"], 1, ["needs a name and a mount path", "volume: training-data data"]),
    (["{c} volume:    "], 1, ["needs a name and a mount path"]),
    (["{c} intro", "{c} volume: data"], 2, ["'data' has no mount path", "volume: data <mount_path>"]),
    (["{c} volume: data   "], 1, ["has no mount path"]),
    (["{c} Volume: data d"], 1, ["did you mean", "volume: <name> <path>"]),
    (["{c} VOLUME: data d"], 1, ["did you mean"]),
    (["{c} volumes: data d"], 1, ["did you mean", "lowercase `volume:`"]),
    (["{c} volume : data d"], 1, ["did you mean"]),
    (["{c} volume data d"], 1, ["did you mean"]),
    (["{c} volume= data d"], 1, ["did you mean"]),
    (["{c} volume"], 1, ["did you mean"]),
    (["{c} sandbox yes"], 1, ["write exactly", "sandbox` (nothing after it"]),
    (["{c} sandbox: true"], 1, ["write exactly"]),
    (["{c} Sandbox"], 1, ["write exactly"]),
    (["{c} SANDBOX"], 1, ["write exactly"]),
    # mount paths
    (["{c} volume: data .."], 1, ["'..' leads out of the working directory", "e.g. 'data'"]),
    (["{c} volume: data ../x"], 1, ["leads out of the working directory"]),
    (["{c} volume: data a/../../x"], 1, ["leads out of the working directory"]),
    (["{c} volume: data ./.."], 1, ["leads out of the working directory"]),
    (["{c} volume: data ."], 1, ["working directory itself", "its own directory"]),
    (["{c} volume: data ./"], 1, ["working directory itself"]),
    (["{c} volume: data a/.."], 1, ["working directory itself"]),
    (["{c} volume: data /etc/x"], 1, ["'/etc/x' needs `# sandbox`", "/tmp/, /mnt/, /opt/, /home/ or /data/",
                                      "use a relative path like 'data' instead"]),
    (["{c} volume: data /tmp/x"], 1, ["needs `# sandbox`"]),
    (["{c} sandbox", "{c} volume: data /etc/x"], 2, ["strictly under /tmp/"]),
    (["{c} sandbox", "{c} volume: data /"], 2, ["strictly under"]),
    (["{c} sandbox", "{c} volume: data /tmp"], 2, ["strictly under"]),
    (["{c} sandbox", "{c} volume: data /tmp/"], 2, ["strictly under"]),
    (["{c} sandbox", "{c} volume: data /tmp/.."], 2, ["strictly under"]),
    (["{c} sandbox", "{c} volume: data /tmp/../etc"], 2, ["(that is, '/etc')", "strictly under"]),
    (["{c} sandbox", "{c} volume: data /tmpfoo/x"], 2, ["strictly under"]),
    (["{c} sandbox", "{c} volume: data /home"], 2, ["strictly under"]),
    (["{c} volume: data ~/x"], 1, ["starts with '~'", "not expanded", "relative path like 'data'"]),
    (["{c} sandbox", "{c} volume: data ~user/x"], 2, ["starts with '~'"]),
    (["{c} volume: data a\\b"], 1, ["backslash", "use '/'"]),
    (["{c} volume: data C:\\data"], 1, ["backslash"]),
    (["{c} volume: data a\x00b"], 1, ["control character U+0000"]),
    (["{c} volume: data a\x1bb"], 1, ["control character U+001B"]),
    (["{c} volume: data a\x7fb"], 1, ["control character U+007F"]),
    (["{c} volume: data " + "x" * 1025], 1, ["1025 characters long", "limit is 1024"]),
    # duplicates and nesting
    (["{c} volume: aa d", "{c} volume: bb ./d/"], 2, ["same directory as 'd' on line 1", "its own directory"]),
    (["{c} volume: aa d", "{c} volume: bb x/../d"], 2, ["same directory"]),
    (["{c} sandbox", "{c} volume: aa /tmp/d", "", "{c} volume: bb /tmp//d/"], 4, ["same directory", "line 2"]),
    (["{c} volume: aa d", "{c} volume: bb d/e"], 2, ["nested", "line 1"]),
    (["{c} volume: aa d/e", "{c} volume: bb d"], 2, ["nested"]),
    (["{c} volume: aa x", "{c} volume: aa y"], 2, ["'aa' is already declared on line 1"]),
    (["{c} volume: data x", "{c} volume: DATA y"], 2, ["already declared on line 1", "ignore case"]),
    (["{c} volume: $args[env] x", "{c} volume: $args[env] y"], 2, ["already declared on line 1"]),
    ([f"{{c}} volume: v{i:02d} d{i}" for i in range(11)], 11, ["at most 10 volumes"]),
    # literal names
    (["{c} volume: a d"], 1, ["2 to 255 characters"]),
    (["{c} volume: -data d"], 1, ["start and end with an ASCII letter or digit"]),
    (["{c} volume: data. d"], 1, ["start and end"]),
    (["{c} volume: da/ta d"], 1, ["'/'", "only ASCII letters, digits"]),
    (["{c} volume: trаining d"], 1, ["U+0430 CYRILLIC SMALL LETTER A", "looks like an ASCII character"]),
    (["{c} volume: ｄata d"], 1, ["U+FF44 FULLWIDTH LATIN SMALL LETTER D"]),
    (["{c} volume: " + "n" * 256 + " d"], 1, ["not 256"]),
    # placeholders
    (["{c} volume: $foo d"], 1, ["unknown placeholder `$foo`", "`$workspace` or `$args[param]`"]),
    (["{c} volume: $workspaces d"], 1, ["unknown placeholder `$workspaces`"]),
    (["{c} volume: ${workspace} d"], 1, ["unknown placeholder `${workspace}`"]),
    (["{c} volume: data$ d"], 1, ["unknown placeholder `$`"]),
    (["{c} volume: $args[ d"], 1, ["malformed placeholder", "`$args[param.nested]`"]),
    (["{c} volume: $args[] d"], 1, ["malformed placeholder"]),
    (["{c} volume: $args[a..b] d"], 1, ["malformed placeholder"]),
    (["{c} volume: $args d"], 1, ["malformed placeholder"]),
    (["{c} volume: $args[env]/x d"], 1, ["'/'", "around placeholders"]),
    (["{c} volume: $workspace-сache d"], 1, ["CYRILLIC SMALL LETTER ES"]),
]


@pytest.mark.parametrize("language", ONE_PER_PREFIX)
@pytest.mark.parametrize("lines, line, fragments", BAD)
def test_it_refuses_malformed_annotations_naming_the_line_and_the_fix(language, lines, line, fragments):
    refused(script(language, *lines), language, line, *fragments)


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_it_refuses_an_absolute_path_when_sandbox_is_only_declared_after_the_code_starts(language):
    content = script(language, "{c} volume: data /tmp/x", "code()", "{c} sandbox")
    refused(content, language, 1, "needs `# sandbox`")


@pytest.mark.parametrize("language", ALL_LANGUAGES)
def test_it_reports_the_first_bad_line_when_several_are_bad(language):
    content = script(language, "{c} volume: ok x", "{c} volume: bad ..", "{c} volume: worse /etc")
    refused(content, language, 2, "'..'")


@pytest.mark.parametrize("root", ROOTS)
def test_it_accepts_each_allowed_absolute_root_with_sandbox_and_refuses_it_without(root):
    assert mounts(parse(f"# sandbox\n# volume: data {root}x\n", "python")) == [("data", root + "x")]
    refused(f"# volume: data {root}x\n", "python", 1, "needs `# sandbox`")


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["ab", "a1", "training-data", "my.volume_2", "A-B.c_D", "00", "x" * 255, "a" + "-._" * 50 + "z"]
)
def test_it_accepts_valid_volume_names(name):
    assert validate_volume_name(name) == name
    assert is_valid_volume_name(name)
    assert VOLUME_NAME_RE.search(name)


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("", "not 0"),
        ("a", "not 1"),
        ("x" * 256, "not 256"),
        ("-ab", "start and end"),
        ("ab-", "start and end"),
        (".ab", "start and end"),
        ("ab_", "start and end"),
        ("a b", "' ' (U+0020 SPACE)"),
        ("a/b", "SOLIDUS"),
        ("ab\n", "'\\n'"),
        ("a\x00b", "'\\x00'"),
        ("trаining", "U+0430 CYRILLIC SMALL LETTER A"),
        ("dаta", "looks like an ASCII character"),
        ("ｄata", "U+FF44 FULLWIDTH LATIN SMALL LETTER D"),
        ("data１", "U+FF11 FULLWIDTH DIGIT ONE"),
        ("ab٣", "ARABIC-INDIC DIGIT THREE"),
        ("café", "U+00E9 LATIN SMALL LETTER E WITH ACUTE"),
        ("$workspace", "'$'"),
    ],
)
def test_it_refuses_invalid_volume_names_and_names_the_offending_character(name, fragment):
    with pytest.raises(AnnotationError) as info:
        validate_volume_name(name)
    assert fragment in str(info.value)
    assert info.value.line == 0 and not str(info.value).startswith("line ")
    assert not is_valid_volume_name(name)
    assert not VOLUME_NAME_RE.search(name)


def test_it_puts_the_line_number_into_a_name_error_when_given_one():
    with pytest.raises(AnnotationError, match=r"^line 7: volume name 'a' "):
        validate_volume_name("a", line=7)


@pytest.mark.parametrize("value", [None, 12, b"ab", ["ab"]])
def test_it_refuses_a_volume_name_that_is_not_text(value):
    with pytest.raises(AnnotationError, match="must be text"):
        validate_volume_name(value)
    assert not is_valid_volume_name(value)


# --- resolving ---------------------------------------------------------------------------------


def annotated(*templates: str, sandbox: bool = False) -> ScriptAnnotations:
    """Annotations with one volume per template, mounted at m0, m1, ... on lines 1, 2, ..."""
    return ScriptAnnotations(
        tuple(VolumeSpec(t, f"m{i}", i + 1) for i, t in enumerate(templates)), sandbox=sandbox
    )


@pytest.mark.parametrize(
    "template, args, name",
    [
        ("training-data", {}, "training-data"),
        ("$workspace-cache", {}, "acme-cache"),
        ("$workspace", {}, "acme"),
        ("$args[env]-db", {"env": "prod"}, "prod-db"),
        ("db-$args[env]", {"env": 3}, "db-3"),
        ("n$args[n]", {"n": -1}, "n-1"),
        ("$args[cfg.region]-$workspace", {"cfg": {"region": "eu-1"}}, "eu-1-acme"),
        ("$args[a.b.c]", {"a": {"b": {"c": "deep"}}}, "deep"),
        ("$args[x]$args[y]", {"x": "ab", "y": "cd"}, "abcd"),
        ("$workspace.$args[my-key_1]", {"my-key_1": "v1"}, "acme.v1"),
        ("data", {"unused": [1, 2]}, "data"),
    ],
)
def test_it_interpolates_workspace_and_arguments_into_names(template, args, name):
    assert resolve(annotated(template), "acme", args) == [ResolvedMount(name, "m0", 1)]


def test_it_resolves_the_example_script_in_the_declared_order():
    parsed = parse("# sandbox\n# volume: zz-data /tmp/data\n# volume: $workspace-cache cache\n", "python")
    assert resolve(parsed, "acme", {}) == [
        ResolvedMount("zz-data", "/tmp/data", 2),
        ResolvedMount("acme-cache", "cache", 3),
    ]


@pytest.mark.parametrize(
    "template, args, fragments",
    [
        ("$args[env]", {}, ["`$args[env]` is not in the job's arguments", 'pass {"env": ...}',
                            "change the annotation"]),
        ("$args[env]", {"Env": "x"}, ["`$args[env]` is not in the job's arguments"]),
        ("$args[cfg.region]", {"cfg": {}}, ["'region' is missing from `$args[cfg]`"]),
        ("$args[cfg.region]", {"cfg": "eu"}, ["`$args[cfg.region]` is not in the job's arguments"]),
        ("$args[env]", {"env": True}, ["`$args[env]` is a boolean", "only strings and integers"]),
        ("$args[env]", {"env": 1.5}, ["is a number"]),
        ("$args[env]", {"env": None}, ["is null"]),
        ("$args[env]", {"env": ["a"]}, ["is an array"]),
        ("$args[env]", {"env": {"a": 1}}, ["is an object"]),
        ("$args[env]", {"env": 10**5000}, ["integer too long"]),
        ("$args[env]-db", {"env": "a/b"}, ["'a/b-db'", "made from `$args[env]` = 'a/b'", "SOLIDUS"]),
        ("$args[env]", {"env": "x"}, ["'x'", "made from `$args[env]` = 'x'", "2 to 255"]),
        ("$args[env]", {"env": ""}, ["made from `$args[env]` = ''"]),
        ("$args[env]-db", {"env": "-x"}, ["start and end"]),
        ("$args[env]-db", {"env": "prоd"}, ["CYRILLIC SMALL LETTER O"]),
        ("$workspace", {}, ["made from `$workspace` = 'a'"]),
        ("$bogus", {}, ["unknown placeholder `$bogus`"]),
        ("$args[", {}, ["malformed placeholder"]),
    ],
)
def test_it_refuses_arguments_that_do_not_make_a_valid_name(template, args, fragments):
    workspace = "a" if template == "$workspace" else "acme"
    with pytest.raises(AnnotationError) as info:
        resolve(annotated(template), workspace, args)
    assert str(info.value).startswith("line 1: ")
    for fragment in fragments:
        assert fragment in str(info.value)


def test_it_refuses_arguments_when_the_job_arguments_are_not_an_object():
    with pytest.raises(AnnotationError, match="not in the job's arguments"):
        resolve(annotated("$args[env]"), "acme", ["env"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "templates, args",
    [
        (("$args[a]", "$args[b]"), {"a": "same", "b": "same"}),
        (("$args[a]", "$args[b]"), {"a": "Same", "b": "sAME"}),
        (("$workspace-x", "acme-x"), {}),
        (("data", "$args[a]"), {"a": "DATA"}),
    ],
)
def test_it_refuses_two_volumes_that_resolve_to_the_same_name_ignoring_case(templates, args):
    with pytest.raises(AnnotationError, match=r"^line 2: .*also used on line 1 .*ignore case"):
        resolve(annotated(*templates), "acme", args)


# --- properties --------------------------------------------------------------------------------

FRAGMENTS = [
    "#", "//", "# ", "// ", "#!", "# volume:", "// volume:", "#volume:", "volume", "volumes:", "Volume:",
    "sandbox", "# sandbox", "// sandbox", "$", "$workspace", "$args[", "$args[a]", "$args[a.b]", "]", "[",
    "..", ".", "/", "./", "../", "/tmp/", "/etc/", "/tmp", "~", "\\", "data", "x", "a-b", "а", "ｄ",
    " ", "  ", "\t", "\n", "\r\n", "\x00", "\x1b", "\ufeff", "\u2028", "\ud800", "\x85", "\x0c",
]
near_miss = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)

keys = st.sampled_from(["a", "b", "env", "cfg"]) | st.text(max_size=3)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=2) | st.dictionaries(keys, children, max_size=2),
    max_leaves=4,
)
args_dicts = st.dictionaries(keys, json_values, max_size=3)


@FAST
@given(content=st.text(), language=st.sampled_from(ALL_LANGUAGES))
def test_it_only_ever_raises_annotation_error_on_arbitrary_text(content, language):
    try:
        parse(content, language)
    except AnnotationError:
        pass


@FAST
@given(content=near_miss, language=st.sampled_from(ALL_LANGUAGES))
def test_it_only_ever_raises_annotation_error_on_near_miss_annotations(content, language):
    try:
        parse(content, language)
    except AnnotationError:
        pass


good_templates = st.sampled_from(["ab", "data", "Data", "$workspace-x", "$args[a]", "$args[cfg.env]-db", "v$args[b]"])
near_templates = st.lists(
    st.sampled_from(["ab", "x", "-", ".", "$workspace", "$args[a]", "$args[cfg.env]", "$args[", "$x", "а"]),
    min_size=1, max_size=4,
).map("".join)
good_paths = st.sampled_from(["d", "e/f", "./g/", "my dir", "a/../h", "/tmp/x", "/mnt/y/", "//data//z", "/home/u/"])
near_paths = st.lists(
    st.sampled_from(["d", "my dir", "..", ".", "/", "//", "/tmp/", "/etc/", "/tmp", "~", "x"]), min_size=1, max_size=5
).map("".join)


@st.composite
def scripts(draw):
    """A '#' script of 1-4 volume lines: mostly well-formed (index-suffixed, so rarely colliding), some near misses."""
    lines = []
    for i in range(draw(st.integers(1, 4))):
        template = draw(good_templates if draw(st.integers(0, 9)) else near_templates)
        path = draw(good_paths if draw(st.integers(0, 9)) else near_paths)
        lines.append(f"# volume: {template}{i} {path}{i}")
    if draw(st.integers(0, 3)):
        lines.insert(draw(st.integers(0, len(lines))), "# sandbox")
    return "\n".join(lines) + "\ncode()\n"


good_values = st.text(alphabet="abZ09", min_size=1, max_size=6) | st.integers(0, 10**6)
scalar_args = st.one_of(good_values, good_values, good_values, st.sampled_from(["a/b", " ", "а", "-x", "", -5]))
plausible_args = st.fixed_dictionaries(
    {"a": scalar_args, "cfg": st.fixed_dictionaries({"env": scalar_args})}, optional={"b": scalar_args | json_values}
)


def is_normalised(path: str, sandbox: bool) -> bool:
    """A relative path inside the working directory, or (with sandbox) an absolute one strictly under a root."""
    if path.startswith("/"):
        return sandbox and path == posixpath.normpath(path) and any(path.startswith(r) and path != r for r in ROOTS)
    parts = path.split("/")
    return path == posixpath.normpath(path) and path != "." and ".." not in parts and "." not in parts


@FAST
@given(content=scripts(), workspace=st.sampled_from(["acme", "Acme", "a", "x/y"]), args=plausible_args)
def test_it_resolves_only_valid_names_and_normalised_mount_paths(content, workspace, args):
    try:
        parsed = parse(content, "python")
    except AnnotationError:
        return
    for spec in parsed.volumes:
        assert is_normalised(spec.mount_path, parsed.sandbox), spec
    try:
        resolved = resolve(parsed, workspace, args)
    except AnnotationError:
        return
    assert [m.line for m in resolved] == [v.line for v in parsed.volumes]
    assert len({m.name.lower() for m in resolved}) == len(resolved)
    for mount in resolved:
        assert VOLUME_NAME_RE.search(mount.name), mount
        assert is_normalised(mount.mount_path, parsed.sandbox), mount


@FAST
@given(
    template_list=st.lists(good_templates | near_templates | st.text(max_size=12), max_size=4),
    workspace=st.text(max_size=8),
    args=args_dicts | plausible_args,
)
def test_it_only_ever_raises_annotation_error_when_resolving_arbitrary_arguments(template_list, workspace, args):
    try:
        resolve(annotated(*template_list), workspace, args)
    except AnnotationError:
        pass


# --- read-only mounts: a trailing `(read-only)` ----------------------------------------------------


@pytest.mark.parametrize("language", ONE_PER_PREFIX)
def test_a_trailing_read_only_asks_for_a_read_only_mount_and_leaves_the_path(language):
    content = script(language, "{c} volume: models m (read-only)", "{c} volume: data my data dir\t(read-only)",
                     "{c} volume: scratch s")
    specs = parse(content, language).volumes
    assert [(v.name_template, v.mount_path, v.read_only) for v in specs] == [
        ("models", "m", True), ("data", "my data dir", True), ("scratch", "s", False)]
    resolved = resolve(parse(content, language), "acme", {})
    assert [(m.name, m.read_only) for m in resolved] == [("models", True), ("data", True), ("scratch", False)]


@pytest.mark.parametrize("path", ["x (copy)", "notes (v2) final", "a(read-only)", "(ro) first"])
def test_other_parentheses_stay_part_of_the_mount_path_as_before(path):
    spec = parse(f"# volume: data {path}\n", "python").volumes[0]
    assert (spec.mount_path, spec.read_only) == (path, False)


@pytest.mark.parametrize("lines, fragments", [
    (["{c} volume: data (read-only)"], ["no mount path before `(read-only)`", "`volume: data data (read-only)`"]),
    (["{c} volume: data d (ro)"], ["unknown mount mode `(ro)`", "write exactly `(read-only)`"]),
    (["{c} volume: data d (readonly)"], ["unknown mount mode `(readonly)`"]),
    (["{c} volume: data d (Read-Only)"], ["unknown mount mode `(Read-Only)`"]),
    (["{c} volume: data d (read only)"], ["unknown mount mode `(read only)`"]),
    (["{c} volume: data d (rw)"], ["unknown mount mode `(rw)`", "read-write if you may write"]),
    (["{c} volume: data .. (read-only)"], ["'..'"]),
])
@pytest.mark.parametrize("language", ONE_PER_PREFIX)
def test_bad_read_only_variants_are_refused_clearly(language, lines, fragments):
    refused(script(language, *lines), language, 1, *fragments)
