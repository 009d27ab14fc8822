"""Library text speaks of parameters, never of command-line flags .

A notebook user who calls `overlap_matrix(..., top=0)` must read "`top=` must be at least 1", not
"--top"; the command line turns `` `top=` `` into `--top` (`circuits.cli.render.cli_message`).
This test reads every string literal of the library packages (docstrings and comments aside) and
fails on a `--flag`, so a flag cannot creep back into an error, a warning or a note.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("catalog", "queries", "ingest")

# A flag: `--name` or `--{name}` (an f-string building one); a suggested `circuits …` command in
# backticks is a command to copy, valid for a notebook user too, and is skipped.
_FLAG = re.compile(r"(?<![\w-])(?:--(?:[a-z]|\{)|-o )")  # -o: the one short flag
_COMMAND = re.compile(r"`circuits [^`]*`")

# Functions whose strings are command lines returned as data (shown for the user to copy), not
# messages about parameters: (file, function) → why.
ALLOWED = {
    ("queries/suggest.py", "*"): "builds the suggested `circuits …` commands (data shown to copy)",
    ("queries/prune_evidence.py", "ablate_command"): "a suggested `circuits ablate` command line",
    ("queries/prune_evidence.py", "images_option"): "the image flags of a suggested `circuits ablate` command",
    ("ingest/train_config.py", "reproduce_command"): "the `circuits train` command recorded beside the weights",
    ("ingest/walkthrough.py", "main"): "the walkthrough script's own argparse options",
}


def _strings(tree: ast.AST) -> list[tuple[str, int, str]]:
    """(function, line, text) of every string literal that is not a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, a placeholder as {…}
            text = "".join(v.value if isinstance(v, ast.Constant) else "{…}" for v in node.values)
            found.append((function, node.lineno, str(text)))
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((function, node.lineno, node.value))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "*")
    return found


def _flag_strings() -> list[str]:
    hits = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for function, line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
                if (rel, "*") in ALLOWED or (rel, function) in ALLOWED:
                    continue
                if _FLAG.search(_COMMAND.sub("", text)):
                    hits.append(f"{rel}:{line} ({function}): {text!r}")
    return hits


def test_library_strings_name_parameters_not_flags():
    hits = _flag_strings()
    assert not hits, "library text names CLI flags; name the parameter as `name=` instead:\n" + "\n".join(hits)


def test_allow_list_entries_exist():
    """An allow-list entry for a function that is gone would hide nothing but mislead."""
    for rel, function in ALLOWED:
        source = (ROOT / rel).read_text(encoding="utf-8")
        assert function == "*" or re.search(rf"def {function}\(", source), (rel, function)


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("`top=` must be at least 1", False),
        ("--top must be at least 1", True),
        ("create it with `circuits db init --db x.duckdb`", False),
        ("raise TrainingError(f'--{flag} must')", True),
        ("a — dash -- and 2--3", False),
        ("-o x.pt asks for a program", True),
        ("x-o y", False),
    ],
)
def test_flag_pattern(text, flagged):
    """The scanner's pattern flags `--name`, not a suggested command or a plain double dash."""
    assert bool(_FLAG.search(_COMMAND.sub("", text))) is flagged


@pytest.mark.parametrize(
    ("library", "command", "cli"),
    [
        ("`top=` must be at least 1, got 0", "overlap", "--top must be at least 1, got 0"),
        ("`ks=` must list positive integers", "defend", "--k must list positive integers"),
        ("`n_baselines=` must be at least 1", "defend", "--baselines must be at least 1"),
        ("pass `embeddings=` FILE (C, D)", "defend", "pass --class-embeddings FILE (C, D)"),
        ("choose another `path=`", "defend", "choose another --plot"),
        ("e.g. `concepts=` star,wave", "compose", "e.g. --from star,wave"),
        ("e.g. `concepts=` star,wave", "shared", "e.g. --concepts star,wave"),
        ("`out=` x.txt: name the file", "apply", "-o x.txt: name the file"),
        ("`out=` x.txt: name the file", "train catfish", "--out x.txt: name the file"),
        ("give more time with `timeout_s=` SECONDS", "sql", "give more time with --timeout SECONDS"),
        ("ran longer than 2 s (`set_forward_timeout`)", "ingest", "ran longer than 2 s (--timeout)"),
        ("in this process (`InlineExecutor()`)", "ingest-many", "in this process (--workers 0)"),
        ("give a logit index, or `class_names=`", "ingest", "give a logit index, or --classes FILE"),
        ("store another with `replace=`", "ingest", "store another with --force"),
        ("pass a folder of images as `folder=`", "thumbnails", "pass a folder of images as --reference DIR"),
    ],
)
def test_the_cli_says_flags(library, command, cli):
    """Each parameter named in library text reads as the flag of the command that raised it."""
    from circuits.cli.render import cli_message

    assert cli_message(library, command) == cli


def test_warnings_print_flags_on_the_command_line(tmp_path):
    """A library warning (the random-init one says `weights=`) prints with the command's flag."""
    import warnings

    from circuits.cli.main import _warnings_as_flags

    with warnings.catch_warnings(record=False):
        with _warnings_as_flags("ingest"):
            shown = warnings.formatwarning("no weights: pass `weights=` FILE", UserWarning, "x.py", 1)
        after = warnings.formatwarning("pass `weights=` FILE", UserWarning, "x.py", 1)
    assert "pass --weights FILE" in shown and "`weights=`" not in shown
    assert "`weights=`" in after  # restored outside the command


def _command_flags() -> dict[str, set[str]]:
    """Every command as typed after `circuits` → the flags it declares."""
    import typer.main

    from circuits.cli.main import app

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), {o for p in cmd.params for o in getattr(p, "opts", ())}

    return dict(walk(typer.main.get_command(app), []))


def test_every_parameter_named_in_library_text_is_a_flag_of_some_command():
    """A `name=` in library text must print as a flag a command has: a renamed flag (or a parameter
    whose flag is spelled differently) fails here until `cli_message`'s tables say it."""
    from catalog.errors import PARAMETER_MENTION
    from circuits.cli.render import _COMMAND_FLAGS, cli_message

    commands = _command_flags()
    every = set().union(*commands.values())
    for command, flags in _COMMAND_FLAGS.items():
        for flag in flags.values():
            assert flag.split(" ")[0] in commands[command], (command, flag)
    named = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            named |= set(PARAMETER_MENTION.findall(path.read_text(encoding="utf-8")))
    # Library-only: a `Preprocessing` object or a loaded model is something only a script can pass
    # (the command line builds them from --input-size, --normalize, … and a model name).
    library_only = {"preprocessing"}
    unknown = {}
    for name in sorted(named - library_only):
        flag = cli_message(f"`{name}=`").split(" ")[0]
        overridden = any(name in flags for flags in _COMMAND_FLAGS.values())
        if flag not in every and not overridden:
            unknown[name] = flag
    assert not unknown, f"parameters whose flag no command declares: {unknown}"


def test_a_library_error_names_parameters_and_the_cli_prints_flags(tmp_path):
    """End to end for one error raised before any work: the library's text, then the command's."""
    from typer.testing import CliRunner

    from catalog.errors import CircuitsError
    from catalog.sql_limits import parse_size
    from circuits.cli.main import app

    with pytest.raises(CircuitsError) as err:
        parse_size("5x")
    assert str(err.value) == "`max_bytes=` '5x' is not a size: give bytes or e.g. 100MB, 2GB"
    assert err.value.parameters == ("max_bytes",)  # a script reads which argument to change
    r = CliRunner().invoke(app, ["sql", "select 1", "--max-bytes", "5x", "--db", str(tmp_path / "c.duckdb")])
    assert r.exit_code == 1 and r.stderr == "error: --max-bytes '5x' is not a size: give bytes or e.g. 100MB, 2GB\n"
    assert not (tmp_path / "c.duckdb").exists()


def test_an_error_carries_the_parameters_it_names():
    from catalog.errors import CircuitsError

    assert CircuitsError("give exactly one of `images=` (a folder) or `dataset=`, not `images=` twice").parameters == (
        "images",
        "dataset",
    )
    assert CircuitsError("no catalog at x.duckdb").parameters == ()
