"""Build-context patterns: Go's filepath.Match for COPY sources, moby's patternmatcher for
.dockerignore, and the context walk and glob built on them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pallet.build.patterns import (
    Matcher,
    glob_context,
    go_clean,
    go_match,
    read_dockerignore,
    walk_context,
)
from pallet.errors import InvalidArgument

# -- go_match ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("abc", "abc", True),
        ("*", "abc", True),
        ("*c", "abc", True),
        ("a*", "a", True),
        ("a*", "abc", True),
        ("a*", "ab/c", False),
        ("a*/b", "abc/b", True),
        ("a*/b", "a/c/b", False),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
        ("a*b?c*x", "abxbbxdbxebxczzx", True),
        ("a*b?c*x", "abxbbxdbxebxczzy", False),
        ("ab[c]", "abc", True),
        ("ab[b-d]", "abc", True),
        ("ab[e-g]", "abc", False),
        ("ab[^c]", "abc", False),
        ("ab[^b-d]", "abc", False),
        ("ab[^e-g]", "abc", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "ab", False),
        ("a?b", "a\u263ab", True),
        ("a[^a]b", "a\u263ab", True),
        ("a???b", "a\u263ab", False),
        ("a[!a]b", "a!b", True),  # Go negates with ^ only; ! is a plain member
        ("a?b", "a/b", False),
        ("[\\]a]", "]", True),
        ("[\\-]", "-", True),
        ("[x\\-]", "x", True),
        ("[x\\-]", "-", True),
        ("[x\\-]", "z", False),
        ("[\\-x]", "x", True),
        ("[z-a]", "m", False),  # an empty range is legal and matches nothing
        ("*x", "xxx", True),
        (".*", ".hidden", True),
        ("*", ".hidden", True),  # unlike a shell, Go's * matches a leading dot
    ],
)
def test_go_match(pattern: str, name: str, expected: bool) -> None:
    assert go_match(pattern, name) is expected


@pytest.mark.parametrize(
    "pattern", ["[]a]", "[-]", "[x-]", "[a-b-c]", "[", "[^", "[^bc", "a[", "a\\", "[\\"]
)
def test_go_match_malformed_pattern_matches_nothing(pattern: str) -> None:
    assert go_match(pattern, "a") is False
    assert go_match(pattern, "-") is False
    assert go_match(pattern, "]") is False


# -- read_dockerignore ---------------------------------------------------------------------


def test_read_dockerignore_like_moby_readall() -> None:
    text = (
        "\ufeff# a comment\n"
        "\n"
        "   \n"
        "  node_modules/  \n"
        "/abs/path\n"
        "./rel/../other//x\n"
        "  # not a comment: # only counts in the first column\n"
        "!  keep.txt\n"
        "!/abs-keep\n"
        "dir/**\n"
        "/\n"
    )
    assert read_dockerignore(text) == [
        "node_modules",
        "abs/path",
        "other/x",
        "# not a comment: # only counts in the first column",
        "!keep.txt",
        "!abs-keep",
        "dir/**",
        "/",
    ]


def test_read_dockerignore_empty_and_crlf() -> None:
    assert read_dockerignore("") == []
    assert read_dockerignore("a\r\nb/\r\n") == ["a", "b"]


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [("", "."), ("a//b/./c/..", "a/b"), ("//x", "/x"), ("/..", "/"), ("../a", "../a")],
)
def test_go_clean(path: str, cleaned: str) -> None:
    assert go_clean(path) == cleaned


# -- Matcher: single patterns (moby patternmatcher's table) -----------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**", "file", True),
        ("**", "dir/file", True),
        ("**/", "dir/file", True),
        ("**/**", "dir/file", True),
        ("dir/**", "dir/file", True),
        ("dir/**", "dir/dir2/file", True),
        ("**/dir", "dir", True),
        ("**/dir", "dir/file", True),
        ("**/dir2/*", "dir/dir2/file", True),
        ("**/dir2/**", "dir/dir2/dir3/file", True),
        ("**file", "file", True),
        ("**file", "dir/file", True),
        ("**/file", "dir/dir/file", True),
        ("**/file*", "dir/dir/file.txt", True),
        ("**/file*txt", "dir/dir/file.txt", True),
        ("**/**/*.txt", "dir/dir/file.txt", True),
        ("**/**/*.txt2", "dir/dir/file.txt", False),
        ("**/*.txt", "file.txt", True),
        ("a**/*.txt", "a/file.txt", True),
        ("a**/*.txt", "a/dir/dir/file.txt", True),
        ("a/*.txt", "a/dir/file.txt", False),
        ("a/*.txt", "a/file.txt", True),
        ("a/*.txt**", "a/file.txt", True),
        ("a[b-d]e", "ae", False),
        ("a[b-d]e", "ace", True),
        ("a[^b-d]e", "aze", True),
        (".*", ".foo", True),
        (".*", "foo", False),
        ("abc.def", "abcZdef", False),
        ("abc.def", "abc.def", True),
        ("abc?def", "abcZdef", True),
        ("abc?def", "abcdef", False),
        ("**/foo/bar", "foo/bar", True),
        ("**/foo/bar", "dir/dir2/foo/bar", True),
        ("abc/**", "abc", False),
        ("abc/**", "abc/def/ghi", True),
        ("**/.foo", ".foo", True),
        ("**/.foo", "bar.foo", False),
        ("a(b)c/def", "a(b)c/def", True),
        ("a(b)c/def", "a(b)c/xyz", False),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
        ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
        # a pattern matching a parent directory excludes everything below it
        ("vendor", "vendor/github.com/x/y.go", True),
        ("*/temp*", "somedir/temporary.txt", True),
        ("*/temp*", "somedir/temp/deep/file", True),
        ("*/temp*", "temporary.txt", False),
        ("*/*/temp*", "somedir/subdir/temporary.txt", True),
        ("*/*/temp*", "somedir/temporary.txt", False),
        ("temp?", "tempa", True),
        ("temp?", "tempab", False),
        ("temp?", "sub/tempa", False),
    ],
)
def test_matcher_single_pattern(pattern: str, path: str, expected: bool) -> None:
    assert Matcher([pattern]).excluded(path) is expected


def test_docs_example_md_files_with_readme_exception() -> None:
    m = Matcher(["*.md", "!README.md"])
    assert m.excluded("CHANGES.md")
    assert not m.excluded("README.md")
    assert not m.excluded("docs/guide.md")  # *.md only looks at the root


def test_docs_example_order_decides_between_exception_and_exclusion() -> None:
    secret_last = Matcher(["*.md", "!README*.md", "README-secret.md"])
    assert secret_last.excluded("README-secret.md")
    assert not secret_last.excluded("README-dev.md")
    assert secret_last.excluded("other.md")

    exception_last = Matcher(["*.md", "README-secret.md", "!README*.md"])
    assert not exception_last.excluded("README-secret.md")
    assert not exception_last.excluded("README-dev.md")


def test_doublestar_go_files_and_exception_inside_excluded_dir() -> None:
    m = Matcher(["**/*.go"])
    assert m.excluded("main.go")
    assert m.excluded("pkg/a/b.go")
    assert not m.excluded("pkg/a/b.txt")

    m = Matcher(["docs", "!docs/keep.txt"])
    assert m.excluded("docs")
    assert m.excluded("docs/other.txt")
    assert not m.excluded("docs/keep.txt")


def test_exclusion_of_a_directory_wins_over_earlier_exception() -> None:
    m = Matcher(["!docs/keep.txt", "docs"])
    assert m.excluded("docs/keep.txt")


def test_everything_but() -> None:
    m = Matcher(["*", "!src", "src/*.tmp"])
    assert m.excluded("Makefile")
    assert not m.excluded("src")
    assert not m.excluded("src/main.c")
    assert m.excluded("src/junk.tmp")


def test_matcher_cleans_patterns_and_paths() -> None:
    m = Matcher(["  ./build/  ", "", "a//b"])
    assert m.excluded("build/out.o")
    assert m.excluded("./build")
    assert m.excluded("a/b/c")


def test_matcher_bad_patterns() -> None:
    with pytest.raises(InvalidArgument, match='illegal exclusion pattern: "!"'):
        Matcher(["!"])
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        Matcher(["a[", "b"])


def test_can_skip_dir() -> None:
    assert Matcher(["node_modules"]).can_skip_dir("node_modules")
    assert not Matcher(["node_modules"]).can_skip_dir("src")  # not excluded at all
    # an exception naming something below keeps the walk going
    assert not Matcher(["docs", "!docs/keep.txt"]).can_skip_dir("docs")
    assert Matcher(["docs", "!other/keep.txt"]).can_skip_dir("docs")
    # wildcard exceptions that could reach inside
    assert not Matcher(["docs", "!**/*.txt"]).can_skip_dir("docs")
    assert not Matcher(["*", "!*/keep"]).can_skip_dir("docs")
    assert Matcher(["*", "!src/keep"]).can_skip_dir("docs")
    # deeper directories
    assert not Matcher(["a", "!a/b/c"]).can_skip_dir("a/b")
    assert Matcher(["a", "!a/x/c"]).can_skip_dir("a/b")


# -- walking and globbing the context ----------------------------------------------------------


def _tree(root: Path, paths: list[str]) -> None:
    for rel in paths:
        target = root / rel
        if rel.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rel)


def test_walk_context_order_and_exclusions(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        [
            "Dockerfile",
            "a.txt",
            "a/b.txt",
            "node_modules/x/y.js",
            "docs/keep.md",
            "docs/drop.md",
            "src/main.go",
            "src/main_test.go",
            "empty/",
        ],
    )
    m = Matcher(["node_modules", "docs", "!docs/keep.md", "**/*_test.go"])
    assert list(walk_context(str(tmp_path), m)) == [
        "Dockerfile",
        "a",
        "a/b.txt",
        "a.txt",
        "docs",
        "docs/keep.md",
        "empty",
        "src",
        "src/main.go",
    ]


def test_walk_context_prunes_without_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, ["keep", "secret/x", "docs/a", "docs/keep"])
    listed: list[str] = []
    real_listdir = os.listdir

    def listdir(path: str) -> list[str]:
        listed.append(os.path.relpath(path, tmp_path))
        return real_listdir(path)

    monkeypatch.setattr("pallet.build.patterns.os.listdir", listdir)
    m = Matcher(["secret", "docs", "!docs/keep"])
    assert list(walk_context(str(tmp_path), m)) == ["docs", "docs/keep", "keep"]
    assert sorted(listed) == [".", "docs"]  # secret/ was never opened


def test_walk_context_does_not_follow_symlinks(tmp_path: Path) -> None:
    _tree(tmp_path, ["real/f"])
    (tmp_path / "link").symlink_to("real")
    assert list(walk_context(str(tmp_path), Matcher([]))) == ["link", "real", "real/f"]


def test_walk_context_excluded_dir_with_nothing_reincluded_is_absent(tmp_path: Path) -> None:
    _tree(tmp_path, ["docs/a.md", "docs/b.txt", "x"])
    m = Matcher(["docs", "!docs/*.rst"])
    assert list(walk_context(str(tmp_path), m)) == ["x"]


def test_glob_context(tmp_path: Path) -> None:
    _tree(tmp_path, ["a.go", "b.go", ".hidden.go", "c.txt", "pkg/x/d.go", "pkg/y/e.go", "[x]"])
    root = str(tmp_path)
    assert glob_context(root, "*.go") == [".hidden.go", "a.go", "b.go"]
    assert glob_context(root, "pkg/*/*.go") == ["pkg/x/d.go", "pkg/y/e.go"]
    assert glob_context(root, "pkg/?/d.go") == ["pkg/x/d.go"]
    assert glob_context(root, "[ab].go") == ["a.go", "b.go"]
    assert glob_context(root, "c.txt") == ["c.txt"]
    assert glob_context(root, "/c.txt") == ["c.txt"]
    assert glob_context(root, "./pkg/../c.txt") == ["c.txt"]
    assert glob_context(root, "../c.txt") == ["c.txt"]  # cannot climb out of the context
    assert glob_context(root, ".") == ["."]
    assert glob_context(root, "missing") == []
    assert glob_context(root, "*.rs") == []
    assert glob_context(root, "\\[x\\]") == ["[x]"]
    assert glob_context(root, "a[") == []  # malformed
