"""The README and docs/ say what the code does, and the code's layers import downwards only."""

from __future__ import annotations

import ast
import os
import re
import shlex
from pathlib import Path

import pytest
import typer

from tests.common import failure, run_titok
from titok.cli import app
from titok.core.errors import DataError
from titok.eval.tasks import resolve_task

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = "<!-- runnable -->"  # put right above a ```bash block: the test runs its commands


def shell_blocks(page: Path) -> list[tuple[bool, list[str]]]:
    """(marked runnable, command lines) of every ```bash block; continuations joined, comments
    dropped."""
    text = page.read_text()
    blocks = []
    for match in re.finditer(r"(<!-- runnable -->\n)?```bash\n(.*?)```", text, re.S):
        joined = match.group(2).replace("\\\n", " ")
        lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
        blocks.append((bool(match.group(1)), [line for line in lines if line]))
    return blocks


def titok_arguments(line: str) -> list[str] | None:
    """The arguments after `titok` (or `-m titok`) in a shell line; None for other programs."""
    words = shlex.split(line)
    for position, word in enumerate(words):
        if word == "titok" and (position == 0 or words[position - 1] == "-m"):
            return words[position + 1 :]
    return None


def documented_commands() -> list[tuple[str, bool, list[str]]]:
    found = []
    for page in PAGES:
        for runnable, lines in shell_blocks(page):
            for line in lines:
                arguments = titok_arguments(line)
                if arguments is not None:
                    found.append((f"{page.name}: {line}", runnable, arguments))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 8
    assert any(runnable for _, runnable, _ in COMMANDS)


@pytest.mark.parametrize(("where", "runnable", "arguments"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_documented_command_parses(where, runnable, arguments):
    """Each `titok` command in a ```bash block names a real command with options it accepts and
    values of the right types (parsed by the CLI itself, without running it)."""
    assert arguments and not arguments[0].startswith("-"), where
    group = typer.main.get_command(app)
    with group.make_context("titok", list(arguments)) as context:
        name, command, rest = group.resolve_command(context, list(arguments))
        assert command is not None, f"{where}: no command '{name}'"
        command.make_context(name, rest, parent=context)  # raises on an unknown option


@pytest.mark.parametrize(
    ("where", "arguments"),
    [(w, a) for w, runnable, a in COMMANDS if runnable],
    ids=[w for w, runnable, _ in COMMANDS if runnable],
)
def test_runnable_commands_run(where, arguments, tmp_path, monkeypatch):
    """Commands in blocks marked runnable run as written (from the repository root; outputs they
    write under runs/ go to a temporary directory instead)."""
    arguments = [a.replace("runs/", f"{tmp_path}/") for a in arguments]
    # as in a fresh clone on a machine without this workplace's ../shared/data
    env = {**os.environ, "TITOK_DATA": str(tmp_path / "no-data")}
    done = run_titok(*arguments, cwd=ROOT, env=env)
    assert done.returncode == 0, f"{where}\n{failure(done)}"


EVAL_TASKS = sorted(
    {
        arguments[arguments.index("--task") + 1]
        for _, _, arguments in COMMANDS
        if arguments[0] == "eval" and "--task" in arguments
    }
)


@pytest.mark.parametrize("task", EVAL_TASKS)
def test_documented_eval_tasks_resolve_without_a_data_folder(task, tmp_path):
    """A task the docs evaluate on needs no data folder (a fresh clone has no ../shared/data):
    the BBH tasks titok ships resolve by name."""
    assert resolve_task(task, data_dir=tmp_path / "no-data").examples


def test_a_missing_data_folder_is_named_with_how_to_set_it(tmp_path):
    with pytest.raises(DataError, match=r"does not exist\): set TITOK_DATA or pass --data-dir"):
        resolve_task("bbh:navigate", data_dir=tmp_path / "no-data")


def import_graph() -> dict[str, set[str]]:
    """module -> the titok and titok_bench modules it imports (anywhere, lazily or not)."""
    modules = {
        ".".join((name, *f.relative_to(package).with_suffix("").parts)).removesuffix(".__init__"): f
        for name in ("titok", "titok_bench")
        for package in [ROOT / "src" / name]
        for f in package.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, file in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("titok"):
                submodules = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                imported |= submodules or {node.module}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names if a.name.startswith("titok")}
        graph[name] = (imported & modules.keys()) - {name}
    return graph


def test_no_import_circle():
    """Lower layers never import upper ones: the module graph has no cycle."""
    graph = import_graph()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                circle = [*path[path.index(other) :], other]
                raise AssertionError("import circle: " + " → ".join(circle))
            if other not in state:
                visit(other, [*path, other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


# The wings, lowest first: a module imports its own wing and those below it, never one above.
WINGS = ("core", "models", "stages", "methods", "eval", "outputs")
TOP = len(WINGS)  # titok/*.py: the commands (cli, api, demo) over every wing
BENCH = TOP + 1  # titok_bench: outside the library, over it; only the CLI reaches it


def wing_of(module: str) -> int:
    parts = module.split(".")
    if module == "titok.version":  # the version string: read by the run directory and the card
        return 0
    if parts[0] == "titok_bench":
        return BENCH
    if len(parts) > 1 and parts[1] in WINGS:
        return WINGS.index(parts[1])
    return TOP


def test_the_wings_import_downwards_only():
    graph = import_graph()
    assert {wing for module in graph if (wing := wing_of(module)) < TOP} == set(
        range(len(WINGS))
    ), "every wing holds modules"
    upward = [
        f"{module} ({WINGS[wing_of(module)]}) imports {other}"
        for module, imported in sorted(graph.items())
        for other in sorted(imported)
        if wing_of(module) < TOP and wing_of(other) > wing_of(module)
    ]
    assert not upward, "\n".join(upward)
    # nothing but the package's own entry points lives beside the wings
    top = sorted(m for m in graph if wing_of(m) == TOP)
    assert top == [
        "titok",
        "titok.__main__",
        "titok.api",
        "titok.cli",
        "titok.demo",
    ], top
    # the library never imports the bench; its command does (titok bench), and the bench never
    # imports the command line
    into_bench = sorted(
        m
        for m, imported in graph.items()
        if wing_of(m) <= TOP and any(wing_of(other) == BENCH for other in imported)
    )
    assert into_bench == ["titok.cli"], into_bench
    assert not any("titok.cli" in graph[m] for m in graph if wing_of(m) == BENCH)
