"""The quick check for plain ASCII paths decides exactly as the full path rules do."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from volumes.engine.manifest import MAX_DEPTH, full_path_problem, path_problem

# Characters near every rule: separators, dots, backslash, controls, DEL, non-ASCII, a lone surrogate.
TRICKY = st.sampled_from(list("ab/. -~[]\\") + ["\x00", "\n", "\x7f", "é", "\ud800", "\u202e"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(TRICKY, max_size=12).map("".join))
def test_quick_and_full_path_checks_agree(path):
    assert (path_problem(path) is None) == (full_path_problem(path) is None)


def test_the_quick_check_keeps_the_length_and_depth_limits():
    for path in ("a" * 255, "a" * 256, "/".join(["d"] * MAX_DEPTH), "/".join(["d"] * (MAX_DEPTH + 1)),
                 "/".join(["x" * 255] * 16), "/".join(["x" * 255] * 17), ".", "..", "a/../b", "./a", "a/", "/a"):
        assert (path_problem(path) is None) == (full_path_problem(path) is None), path
    assert path_problem("a" * 256) and path_problem("/".join(["d"] * (MAX_DEPTH + 1)))
