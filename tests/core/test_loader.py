"""Reading manifest files: which files, which documents, and where each field is."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import vm_manifest, write_manifest

from reconciler.adapters.files import display_path, manifest_files
from reconciler.adapters.manifests import load_file, load_tree
from reconciler.core.errors import Problem
from reconciler.core.validate.document import Document, dotted


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Paths are shown relative to the working directory, as a user would type them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_manifest_files_skips_hidden_and_non_yaml(workdir: Path) -> None:
    root = workdir / "manifests"
    for name in ["b.yaml", "a.yml", "deep/er/c.yaml", "z/.d.yaml", ".e.yaml", ".git/f.yaml",
                 ".cache/sub/g.yml", "notes.txt", "h.yaml~", "i.yaml.bak", "README.md",
                 "j.json", "k.YAML", "deep/.hidden/l.yaml"]:
        write_manifest(root, name, "x: 1\n")
    (root / "empty-dir").mkdir()
    found = [str(p.relative_to(root)) for p in manifest_files(root)[0]]
    assert found == ["a.yml", "b.yaml", "deep/er/c.yaml"]


def test_manifest_files_of_one_file_is_that_file(workdir: Path) -> None:
    path = write_manifest(workdir, "vm.yaml", "x: 1\n")
    assert manifest_files(path) == ([path], [])


def test_a_hidden_root_is_still_read(workdir: Path) -> None:
    write_manifest(workdir / ".manifests", "a.yaml", "x: 1\n")
    assert [p.name for p in manifest_files(workdir / ".manifests")[0]] == ["a.yaml"]


def test_positions_in_every_document_count_from_the_top_of_the_file(workdir: Path) -> None:
    path = write_manifest(workdir, "m/multi.yaml", """\
        # comment
        a: 1
        ---
        ---
        b:
          c:
            - x
            - d: 2
              e: [1, {f: 3}]
        ...
        --- {g: 4}
        """)
    documents, problems = load_file(path, workdir / "m")
    assert problems == []
    assert [(d.file, d.relative, d.index, d.data) for d in documents] == [
        ("m/multi.yaml", "multi.yaml", 0, {"a": 1}),
        # the empty document (index 1) is skipped, but counted
        ("m/multi.yaml", "multi.yaml", 2, {"b": {"c": ["x", {"d": 2, "e": [1, {"f": 3}]}]}}),
        ("m/multi.yaml", "multi.yaml", 3, {"g": 4}),
    ]
    first, second, third = documents
    assert first.position(("a",)) == (2, 1)
    assert second.position(()) == (5, 1)
    assert second.position(("b",)) == (5, 1)
    assert second.position(("b", "c")) == (6, 3)
    assert second.position(("b", "c", 0)) == (7, 7)
    assert second.position(("b", "c", 1)) == (8, 7)
    assert second.position(("b", "c", 1, "e")) == (9, 7)
    assert second.position(("b", "c", 1, "e", 0)) == (9, 11)
    assert second.position(("b", "c", 1, "e", 1, "f")) == (9, 15)
    # a field that is not there: its nearest ancestor that is
    assert second.position(("b", "c", 1, "missing", "deeper")) == (8, 7)
    assert second.position(("nothing",)) == (5, 1)
    assert third.position(("g",)) == (11, 6)


def test_problem_names_file_position_and_dotted_field(workdir: Path) -> None:
    path = write_manifest(workdir, "m/vm.yaml", vm_manifest("web-01", disks="- name: root\n"
                                                                           "  size: 1GiB"))
    (doc,), _ = load_file(path, workdir / "m")
    problem = doc.problem(("spec", "disks", 0, "size"), "too small")
    assert problem == Problem("m/vm.yaml", 12, 7, "spec.disks[0].size", "too small")
    assert str(problem) == "m/vm.yaml:12:7: spec.disks[0].size: too small"


def test_problem_text_without_position_or_field() -> None:
    assert str(Problem("m/a.yaml", 0, 0, "", "cannot read")) == "m/a.yaml: cannot read"
    assert str(Problem("m/a.yaml", 3, 1, "", "bad")) == "m/a.yaml:3:1: bad"
    assert Problem("f", 1, 2, "x", "y").as_dict() == {
        "file": "f", "line": 1, "column": 2, "field": "x", "message": "y"}


@pytest.mark.parametrize(("path", "text"), [
    ((), ""),
    (("spec",), "spec"),
    (("spec", "memory"), "spec.memory"),
    (("spec", "disks", 0), "spec.disks[0]"),
    (("spec", "networks", 1, "mac"), "spec.networks[1].mac"),
    ((0, "a"), "[0].a"),
])
def test_dotted(path: tuple[str | int, ...], text: str) -> None:
    assert dotted(path) == text


def test_duplicate_keys_are_problems_at_the_second_key(workdir: Path) -> None:
    path = write_manifest(workdir, "m/dup.yaml", """\
        a: 1
        b:
          c: 1
          d: 1
          c: 2
        a: 2
        ---
        e: [{f: 1, f: 2}]
        "1": quoted string
        1: an integer is another key
        """)
    documents, problems = load_file(path, workdir / "m")
    assert [str(p) for p in problems] == [
        "m/dup.yaml:5:3: b.c: duplicate key",
        "m/dup.yaml:6:1: a: duplicate key",
        "m/dup.yaml:8:12: e[0].f: duplicate key",
    ]
    assert [d.data for d in documents] == [
        {"a": 2, "b": {"c": 2, "d": 1}},
        {"e": [{"f": 2}], "1": "quoted string", 1: "an integer is another key"},
    ]


@pytest.mark.parametrize(("text", "line", "column", "message"), [
    ("a: 1\n b: 2\n", 2, 3,
     "YAML syntax error: mapping values are not allowed in this context"),
    ("a: [1, 2\nb: 3\n", 2, 2,
     "YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)"),
    ("a:\n\t- 1\n", 2, 1,
     "YAML syntax error: found character that cannot start any token (while scanning for the next"
     " token)"),
    ("a: 'open\n", 2, 1,
     "YAML syntax error: found unexpected end of stream (while scanning a quoted scalar)"),
    ("a: *nowhere\n", 1, 4, "YAML syntax error: found undefined alias"),
    ("a: !!python/object:os.system x\n", 1, 4, "YAML syntax error: could not determine a"
     " constructor for the tag 'tag:yaml.org,2002:python/object:os.system'"),
    ("? [a, b]\n: c\n", 1, 3,
     "YAML syntax error: found unhashable key (while constructing a mapping)"),
    ("ok: 1\n---\nfine: 2\n---\n  bad: 1\n bad: 2\n", 6, 2,
     "YAML syntax error: did not find expected <document start>"),
])
def test_yaml_errors_point_at_their_line(workdir: Path, text: str, line: int, column: int,
                                         message: str) -> None:
    path = workdir / "m" / "bad.yaml"
    path.parent.mkdir()
    path.write_text(text)
    documents, problems = load_file(path, workdir / "m")
    # a file that cannot be parsed yields none of its documents, not even the good ones
    assert documents == []
    assert problems == [Problem("m/bad.yaml", line, column, "", message)]


def test_aliases_and_merge_keys_are_followed(workdir: Path) -> None:
    path = write_manifest(workdir, "m/alias.yaml", """\
        base: &base {vcpus: 1, memory: 1GiB}
        vm:
          <<: *base
          vcpus: 2
        again: *base
        """)
    (doc,), problems = load_file(path, workdir / "m")
    assert problems == []
    assert doc.data == {"base": {"vcpus": 1, "memory": "1GiB"},
                        "vm": {"vcpus": 2, "memory": "1GiB"},
                        "again": {"vcpus": 1, "memory": "1GiB"}}
    assert doc.position(("vm", "vcpus")) == (4, 3)
    assert doc.position(("again", "vcpus")) == (1, 14)  # where the alias's content is written


def test_recursive_alias_is_a_problem_not_a_crash(workdir: Path) -> None:
    path = write_manifest(workdir, "m/loop.yaml", """\
        ok: 1
        ---
        spec: &spec
          vcpus: 1
          self: [*spec]
        ---
        fine: 2
        """)
    documents, problems = load_file(path, workdir / "m")
    assert [d.data for d in documents] == [{"ok": 1}, {"fine": 2}]
    assert [str(p) for p in problems] == [
        "m/loop.yaml:3:7: a YAML alias refers to a node that contains it (recursive)"]


def test_billion_laughs_is_refused_quickly(workdir: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = workdir / "m" / "lol.yaml"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    documents, problems = load_file(path, workdir / "m")
    assert time.monotonic() - started < 5
    assert documents == []
    # A file may expand to 1,000 nodes and one per character it holds.
    allowed = 1000 + len(path.read_text())
    assert [str(p) for p in problems] == [
        f"m/lol.yaml:1:1: the file is too large once its aliases are expanded: more than "
        f"{allowed} nodes (1000 and one per character of the file); expand fewer aliases, or "
        "split it"]


def test_a_large_file_may_expand_a_document_to_100000_nodes(workdir: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = workdir / "m" / "lol.yaml"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n" + "#" * 200_000 + "\n")
    documents, problems = load_file(path, workdir / "m")
    assert documents == []
    assert [str(p) for p in problems] == [
        "m/lol.yaml:1:1: the document is too large: more than 100000 nodes once its aliases are"
        " expanded"]


def test_deep_nesting_is_refused(workdir: Path) -> None:
    path = workdir / "m" / "deep.yaml"
    path.parent.mkdir()
    path.write_text("a:\n" + "".join("  " * i + f"- k{i}:\n" for i in range(1, 40)) + "\n")
    documents, problems = load_file(path, workdir / "m")
    assert documents == []
    # each level is a list item and a key: the 33rd level is 66 deep
    assert [str(p) for p in problems] == ["m/deep.yaml:34:67: nested more than 64 levels deep"]


def test_byte_order_mark_and_crlf_are_fine(workdir: Path) -> None:
    path = workdir / "m" / "win.yaml"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbfa: 1\r\nb:\r\n  c: 2\r\n")
    (doc,), problems = load_file(path, workdir / "m")
    assert problems == []
    assert doc.data == {"a": 1, "b": {"c": 2}}
    assert doc.position(("b", "c")) == (3, 3)


def test_unreadable_file_is_one_problem(workdir: Path) -> None:
    path = workdir / "m" / "latin1.yaml"
    path.parent.mkdir()
    path.write_bytes(b"name: caf\xe9\n")
    assert load_file(path, workdir / "m") == ([], [Problem(
        "m/latin1.yaml", 1, 10, "", "not UTF-8 text: byte 0xe9 cannot be decoded; save the file "
                                    "as UTF-8")])


def test_empty_files_are_problems_and_comment_only_files_are_not(workdir: Path) -> None:
    # A file truncated to nothing by a failed checkout must not read as "these VMs are gone";
    # one that holds comments or separators only was written so.
    write_manifest(workdir / "m", "empty.yaml", "")
    write_manifest(workdir / "m", "comments.yaml", "# nothing yet\n")
    write_manifest(workdir / "m", "separator.yaml", "# nothing yet\n---\n...\n")
    assert load_tree(workdir / "m") == ([], [
        Problem("m/empty.yaml", 1, 1, "", "the file is empty; add a manifest, or delete the "
                                          "file"),
    ])


def test_symlinked_folders_are_followed_once(workdir: Path) -> None:
    root = workdir / "m"
    write_manifest(root, "real/a.yaml", "n: a\n")
    (root / "linked").symlink_to(root / "real")
    (root / "real" / "loop").symlink_to(root)
    files, problems = manifest_files(root)
    assert problems == []
    names = [str(p.relative_to(root)) for p in files]
    # "real" and "linked" are one folder: read once, always by the path first by name (the
    # path recorded in the domain's metadata must not flip between runs)
    assert names == ["linked/a.yaml"]


def test_a_deep_tree_is_walked_whole(workdir: Path) -> None:
    # Deeper than Python's recursion limit: the walk keeps a stack, it does not recurse.
    deepest = "m"
    for _ in range(1201):  # os.makedirs recurses too
        os.mkdir(deepest)
        deepest = os.path.join(deepest, "d")
    deepest = os.path.dirname(deepest)
    write_manifest(Path(deepest), "a.yaml", "n: a\n")
    try:
        files, problems = manifest_files(workdir / "m")
        assert (len(files), problems) == (1, [])
        assert files[0].name == "a.yaml" and len(files[0].parts) > 1200
    finally:  # shutil.rmtree (and so tmp_path's cleanup) recurses: remove it bottom up
        os.remove(os.path.join(deepest, "a.yaml"))
        while deepest:
            os.rmdir(deepest)
            deepest = os.path.dirname(deepest)


def test_broken_and_outside_links_are_problems(workdir: Path) -> None:
    # A link whose target is gone (an NFS mount down, a folder renamed mid-pull) leaves a hole in
    # the set, and a link out of the manifest directory would read the host's files.
    root = workdir / "m"
    write_manifest(root, "ok.yaml", "n: a\n")
    write_manifest(workdir, "elsewhere/b.yaml", "n: b\n")
    (root / "team-b").symlink_to(workdir / "gone")
    (root / "c.yaml").symlink_to(workdir / "gone.yaml")
    (root / "etc").symlink_to(workdir / "elsewhere")
    (root / "d.yaml").symlink_to(workdir / "elsewhere" / "b.yaml")
    write_manifest(workdir, "m-evil/e.yaml", "n: e\n")  # a sibling whose name starts alike
    (root / "evil").symlink_to(workdir / "m-evil")
    # Links that are no manifests and cannot have been folders are no hole: not problems.
    (workdir / "LICENSE").write_text("text\n")
    (root / "LICENSE").symlink_to(workdir / "LICENSE")
    (root / "notes.txt").symlink_to(workdir / "gone.txt")
    files, problems = manifest_files(root)
    assert [p.name for p in files] == ["ok.yaml"]
    outside = str((workdir / "elsewhere").resolve())
    assert sorted((p.file, p.message.split(";")[0]) for p in problems) == [
        ("m/c.yaml", "broken symbolic link: its target cannot be read"),
        ("m/d.yaml", f"symbolic link to {outside}/b.yaml, outside the manifest directory"),
        ("m/etc", f"symbolic link to {outside}, outside the manifest directory"),
        ("m/evil", f"symbolic link to {(workdir / 'm-evil').resolve()}, outside the manifest "
                   "directory"),
        ("m/team-b", "broken symbolic link: its target cannot be read"),
    ]


def test_a_tag_on_a_wrong_value_is_a_problem_that_hides_the_value(workdir: Path) -> None:
    path = write_manifest(workdir, "m/vm.yaml", "spec:\n  cloudInit:\n    userData: !!int hunter2\n"
                                                "---\nn: b\n")
    documents, problems = load_file(path, workdir / "m")
    assert [d.data for d in documents] == [{"n": "b"}]
    assert [str(p) for p in problems] == [
        "m/vm.yaml:1:1: a tagged value could not be built (a tag such as !!int or !!binary on a "
        "value that is not one); remove the tag or fix the value"]


def _as_nobody(work: Callable[[], object]) -> object:
    """``work()`` in a child process with uid/gid 65534 when the tests run as root (who reads any
    folder), so that file modes are obeyed; its result comes back as JSON."""
    if os.geteuid() != 0:
        return work()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, json.dumps(work()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        out = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(out)


def test_an_unreadable_folder_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    # A folder of manifests nobody can read is a hole in the desired state, so it is a problem
    # (and blocks every destroy), not a silently smaller set.
    top = Path(tempfile.mkdtemp(prefix="reconciler-test-"))
    try:
        top.chmod(0o755)
        monkeypatch.chdir(top)
        write_manifest(top, "m/ok.yaml", "n: a\n")
        write_manifest(top, "m/locked/b.yaml", "n: b\n")
        for folder in (top / "m", top / "m" / "locked"):
            folder.chmod(0o755)
        (top / "m" / "locked").chmod(0)

        def walk() -> object:
            files, problems = manifest_files(Path("m"))
            return [p.name for p in files], [str(p) for p in problems]

        assert _as_nobody(walk) == [
            ["ok.yaml"], ["m/locked: cannot read folder: Permission denied"]]
    finally:
        (top / "m" / "locked").chmod(0o755)
        shutil.rmtree(top)


def test_load_tree_of_a_missing_path(workdir: Path) -> None:
    assert load_tree(workdir / "nope") == ([], [Problem("nope", 0, 0, "",
                                                        "no such file or directory")])


def test_load_tree_reads_files_in_sorted_order(workdir: Path) -> None:
    write_manifest(workdir / "m", "b.yaml", "n: b\n")
    write_manifest(workdir / "m", "a/z.yml", "n: az\n---\nn: az2\n")
    write_manifest(workdir / "m", "c.yaml", "n: c\n")
    documents, problems = load_tree(workdir / "m")
    assert problems == []
    assert [(d.relative, d.index, d.data) for d in documents] == [
        ("a/z.yml", 0, {"n": "az"}), ("a/z.yml", 1, {"n": "az2"}),
        ("b.yaml", 0, {"n": "b"}), ("c.yaml", 0, {"n": "c"})]
    assert all(isinstance(d, Document) for d in documents)


def test_one_file_as_root_is_relative_to_its_folder(workdir: Path) -> None:
    path = write_manifest(workdir / "m", "sub/one.yaml", "n: 1\n")
    (doc,), _ = load_tree(path)
    assert (doc.file, doc.relative) == ("m/sub/one.yaml", "one.yaml")


def test_display_path_is_relative_below_the_working_directory(workdir: Path) -> None:
    assert display_path(workdir / "m" / "a.yaml") == os.path.join("m", "a.yaml")
    outside = workdir.parent / "elsewhere.yaml"
    assert display_path(outside) == str(outside)


@pytest.mark.parametrize("text", [
    "a: 1\n---\n",  # a trailing separator: the document it opens is empty
    "---\n",
    "a: 1\n---\n# only a comment\n---\nb: 2\n",
])
def test_an_empty_document_is_skipped(workdir: Path, text: str) -> None:
    path = write_manifest(workdir, "m/e.yaml", text)
    assert load_file(path, workdir / "m")[1] == []
