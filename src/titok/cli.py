"""Command line: a thin layer over `titok.stages.runner`, `titok.methods` and `titok.demo`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from titok.core.config import TransplantConfig, describe_settings
from titok.core.errors import TitokError
from titok.version import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Transplant a LoRA to another base model (TiTok).",
    epilog="One stage of a run directory: titok STAGE --run DIR (`titok methods` lists each "
    "method's stages, `titok STAGE --help` what one does).",
)
# soft_wrap: messages keep their lines (paths and commands stay copyable), whatever the width.
console = Console(stderr=True, soft_wrap=True)

RunOption = Annotated[Path, typer.Option("--run", help="Run directory made by `titok transplant`.")]
DtypeOption = Annotated[
    str,
    typer.Option(
        help="Compute dtype: auto (bf16 where the hardware is fast at it, else fp32), "
        "float32 or bfloat16."
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Redo the stage even if it is up to date.")
]


def _log_to_file(root: logging.Logger, log_file: Path) -> None:
    from titok.core.distributed import launched_as_main

    if not launched_as_main():  # under a launcher one copy of each line, not one a process
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)


def _setup_logging(quiet: bool, log_file: Path | None = None) -> None:
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.INFO)
    handler = RichHandler(console=console, show_path=False, show_time=False)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    root.addHandler(handler)
    if log_file is not None:  # a command about to work: a log of its own
        _log_to_file(root, log_file)
        from titok.core.threads import fit_threads_to_load

        fit_threads_to_load()
    for noisy in (
        "transformers",
        "peft",
        "accelerate",
        "httpx",
        "urllib3",
        "lm_eval",
        "datasets",
        "absl",
    ):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # Library deprecation notices and weight-loading bars say nothing a titok user can act on;
    # progress bars only help on a terminal (a log file gets the stage lines instead).
    warnings.filterwarnings("ignore", category=FutureWarning)
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")
    # transformers reads this when it is imported: set here, it costs no import (`titok
    # transplant --help` stays fast); imported already (in-process use), it is told directly.
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _print_version(asked: bool) -> None:
    if asked:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print titok's version."
        ),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="CPU threads for torch (default: torch's, every core; env TITOK_THREADS). "
            "On a machine busy with other work, fewer threads than cores avoid spin-waiting.",
        ),
    ] = None,
) -> None:
    _setup_logging(quiet)
    from titok.core.threads import configure_threads

    configure_threads(threads)


# `titok --help` lists the main commands first, then these panels.
STAGES = "Single stages of a run directory"
MORE = "More"


def _stage(name: str, run_dir: Path, force: bool) -> None:
    from titok.methods import open_run

    run = open_run(run_dir)
    _setup_logging(logging.getLogger().handlers[0].level > logging.INFO, run_dir / "run.log")
    ran = run.run_stage(run.stage(name), force)
    console.print(f"{name}: {'done' if ran else 'up to date'} ({run_dir})")


def _stage_command(name: str, help_text: str) -> None:
    def command(run: RunOption, force: ForceOption = False) -> None:
        _stage(name, run, force)

    app.command(name, help=help_text, rich_help_panel=STAGES)(command)


def _add_stage_commands(argv: list[str]) -> None:
    """One command per stage of the registered methods (`titok synth --run DIR`, a plugin's own
    stages too), with the stage's own help text. Only when the command line names no other
    command: the registry imports torch, which `titok --help` and `titok --version` must not."""
    words = [word for word in argv if not word.startswith("-")]
    if not words or any(word in _static_commands() for word in words):
        return
    from titok.methods import available

    helps: dict[str, dict[str, list[str]]] = {}  # stage -> help text -> the methods with it
    for method in available().values():
        for stage in method.stages:
            helps.setdefault(stage.name, {}).setdefault(stage.help, []).append(method.name)
    for name, texts in helps.items():
        if len(texts) == 1:
            _stage_command(name, next(iter(texts)))
        else:  # one name, several stages (KD's train is not TiTok's): each with its methods
            _stage_command(
                name, "\n\n".join(f"{', '.join(who)}: {text}" for text, who in texts.items())
            )


def _static_commands() -> set[str]:
    return {info.name or info.callback.__name__ for info in app.registered_commands}


def _about(name: str) -> str:
    """A flag's help: the setting's own description (`titok.core.config`), and the dotted name
    a YAML file or `--set` gives it under."""
    return _SETTING_HELP[name] + (f" ({name})" if "." in name else "")


_SETTING_HELP = {name: text for name, _, text in describe_settings(TransplantConfig)}


@app.command()
def transplant(
    out: Annotated[Path, typer.Option(help="Run directory (created; reruns resume).")],
    source_base: Annotated[str | None, typer.Option(help=_about("source_base"))] = None,
    source_adapter: Annotated[
        str | None,
        typer.Option(help=_about("source_adapter")),
    ] = None,
    source_adapter_revision: Annotated[
        str | None, typer.Option(help=_about("source_adapter_revision"))
    ] = None,
    target_base: Annotated[str | None, typer.Option(help=_about("target_base"))] = None,
    seeds: Annotated[str | None, typer.Option(help=_about("seeds"))] = None,
    queries: Annotated[str | None, typer.Option(help=_about("queries"))] = None,
    method: Annotated[str | None, typer.Option(help=_about("method"))] = None,
    k: Annotated[float | None, typer.Option(help=_about("select.k"))] = None,
    m: Annotated[int | None, typer.Option(help=_about("select.m"))] = None,
    pool_factor: Annotated[float | None, typer.Option(help=_about("synth.pool_factor"))] = None,
    rank_by: Annotated[
        str | None,
        typer.Option(help=_about("select.rank_by")),
    ] = None,
    query_writer: Annotated[str | None, typer.Option(help=_about("synth.query_writer"))] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any setting as SECTION.NAME=VALUE (VALUE read as YAML), e.g. --set "
            "kd.kl_weight=0.3 or --set synth.temperature=0.8; repeatable, wins over --config "
            "and the flags above. `titok settings` lists every section and setting.",
        ),
    ] = None,
    train_preset: Annotated[
        str | None,
        typer.Option(help=_about("train.preset")),
    ] = None,
    epochs: Annotated[
        float | None,
        typer.Option(help=_about("train.epochs")),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help=_about("train.lr")),
    ] = None,
    lora_r: Annotated[int | None, typer.Option(help=_about("train.r"))] = None,
    seed: Annotated[int | None, typer.Option(help=_about("seed"))] = None,
    dtype: Annotated[
        str | None,
        typer.Option(help=_about("dtype")),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML settings; flags override it.")] = None,
    overwrite: Annotated[
        bool,
        typer.Option(help="Start the run directory again (another transplant, other settings)."),
    ] = False,
    update: Annotated[
        bool,
        typer.Option(
            help="Keep the run directory and redo the stages that changed settings affect "
            "(without it, settings that would redo finished or kept work are refused)."
        ),
    ] = False,
) -> None:
    """Transplant a LoRA from the source base to the target base (all stages, resumable)."""
    from titok.core.config import assignments, build_config, merge
    from titok.methods import run_transplant

    flags: dict[str, Any] = {
        "source_base": source_base,
        "source_adapter": source_adapter,
        "source_adapter_revision": source_adapter_revision,
        "target_base": target_base,
        "seeds": seeds,
        "queries": queries,
        "method": method,
        "seed": seed,
        "dtype": dtype,
        "select": {"k": k, "m": m, "rank_by": rank_by},
        "synth": {"pool_factor": pool_factor, "query_writer": query_writer},
        "train": {"preset": train_preset, "epochs": epochs, "lr": lr, "r": lora_r},
    }
    settings = build_config(TransplantConfig, config, merge(flags, assignments(set_ or [])))
    quiet = logging.getLogger().handlers[0].level > logging.INFO
    run_transplant(
        settings,
        out,
        overwrite=overwrite,
        keep_work=not update,
        ready=lambda run: _setup_logging(quiet, out / "run.log"),  # once out is claimed
    )
    console.print(f"adapter: {out / 'adapter'}")


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option(help="Model: hub id, directory, .gguf or bundled name.")],
    task: Annotated[
        str,
        typer.Option(
            help="bbh:<task> (bbh:boolean_expressions is bundled; others need --data-dir), "
            "mmlu:<subject> (log-likelihood), mmlu-gen:<subject> (generative), facts:<seed>, "
            "rule:<seed> (generated: `titok make-task`), jsonl:<file> (exact match), "
            "jsonl-rouge:<file>, lamp4:<questions.json>, lamp5:<questions.json> or a BBH .json "
            "file."
        ),
    ],
    adapter: Annotated[
        str | None, typer.Option(help="PEFT adapter to apply: a directory or a Hub id[@rev].")
    ] = None,
    split: Annotated[str, typer.Option(help="test (10%), train (90%) or all.")] = "test",
    limit: Annotated[int | None, typer.Option(help="Evaluate at most this many examples.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where predictions and the result go.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the 90/10 split.")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest generated answer.")] = 32,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Holds bbh/ and mmlu/ (default $TITOK_DATA or ../shared/data)."),
    ] = None,
    dtype: DtypeOption = "auto",
) -> None:
    """Zero-shot evaluation through lm-evaluation-harness (greedy answers; MMLU by log-likelihood).

    Closed-answer tasks lead with balanced accuracy (a constant answer scores 1/L), beside
    accuracy, chance and the top prediction's share; open-answer tasks with exact match and ROUGE-L.
    """
    from titok.core.precision import dtype_setting
    from titok.eval.run import run_eval

    result, folder = run_eval(
        model,
        task,
        adapter,
        split,
        limit,
        out,
        seed,
        max_new_tokens,
        data_dir,
        dtype_setting(dtype),
    )
    from titok.core.distributed import is_main

    if not is_main():
        return
    value, stderr = result.headline_value
    print(f"{task} {split} n={result.n}: {result.headline} = {value:.4f} ± {stderr:.4f} (headline)")
    for name, (value, stderr) in result.metrics.items():
        if name != result.headline:
            print(f"{task} {split} n={result.n}: {name} = {value:.4f} ± {stderr:.4f}")
    print(f"predictions: {folder / 'predictions.jsonl'}")


@app.command()
def status(run: RunOption) -> None:
    """Each stage of a run: done, stale (settings or inputs changed) or to do, with its figures."""
    from titok.methods import open_run

    for stage, state, figures in open_run(run).status():
        shown = ", ".join(f"{k}={v}" for k, v in figures.items())
        print(f"{stage:<7} {state:<6} {shown}")


@app.command()
def bench(
    out: Annotated[Path, typer.Option(help="Bench directory (cells resume).")] = Path("runs/bench"),
    tasks: Annotated[
        str | None, typer.Option(help="Comma-separated tasks (default: the bench set).")
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated transplant methods (default: all).")
    ] = None,
    suite: Annotated[
        list[str] | None,
        typer.Option(
            help="A bench suite to add (repeatable): a bundled one's name (ablations, "
            "legacy-synth) or a YAML file: its columns join the methods', its settings (tasks, "
            "methods, source, target, synth) replace the default suite's unless a flag is given."
        ),
    ] = None,
    ablations: Annotated[
        bool,
        typer.Option(help="Add TiTok's ablations (the same as --suite ablations)."),
    ] = False,
    external_queries: Annotated[
        bool,
        typer.Option(
            help="Add a `<method>:queries` column: the expert labels the training "
            "questions (a user's query logs) instead of writing queries."
        ),
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Test examples per task.")] = None,
    m: Annotated[int, typer.Option(help="Synthetic samples kept per transplant.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Holds bbh/ and mmlu/.")] = None,
    test_frac: Annotated[
        float, typer.Option(help="Share of each task held out for testing (paper: 0.1).")
    ] = 0.5,
    repeats: Annotated[
        int, typer.Option(help="Runs of every transplant column (pipeline seeds seed…seed+N−1).")
    ] = 1,
    first_repeat: Annotated[
        int,
        typer.Option(
            help="Start at this repeat (0-based): split the repeats over jobs run side by side."
        ),
    ] = 0,
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(
            help="Every transplant training recomputes activations: the same adapters, less "
            "memory (several bench jobs side by side; without it, on only where a training "
            "would need over half the free memory)."
        ),
    ] = False,
    repeat_only: Annotated[
        str | None,
        typer.Option(help="Comma-separated columns that get the repeats (default: every one)."),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated transplant columns to run (default: every chosen one), e.g. "
            "titok:queries,titok:paper:queries."
        ),
    ] = None,
    render: Annotated[
        Path | None,
        typer.Option(
            help="Only write results.md and the charts of this bench directory (with --columns: "
            "print the tables of those columns and the base ones, writing nothing)."
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="With --render --columns: compare every column with this one (default: TiTok "
            "of each setting), e.g. titok:epochs=12:queries."
        ),
    ] = None,
    screen: Annotated[
        bool,
        typer.Option(
            help="Only the source base and expert, on every BBH task, four MMLU subjects and "
            "facts:0 (or --tasks): which tasks have knowledge to move."
        ),
    ] = False,
    source: Annotated[
        str | None,
        typer.Option(help="Source base model (default suite: gemma3-270m, the screen's choice)."),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Target base model (default suite: smollm2-135m).")
    ] = None,
    synth: Annotated[
        Path | None,
        typer.Option(
            help="YAML file of synth settings over the suites' (titok's query writing with "
            "exact-duplicate filtering and 64-token answers), e.g. results/facts/synth.yaml."
        ),
    ] = None,
    dtype: DtypeOption = "auto",
) -> None:
    """The comparison table: source base/expert, target vanilla/ceiling, each method.

    Headline metric per task (balanced accuracy on closed answers), paired differences with
    bootstrap intervals against TiTok and the vanilla target; cells resume, results render from
    the cells alone (`--render DIR`). The bench lives outside the library (`titok_bench`).
    """
    from titok_bench import command

    def listed(text: str | None) -> list[str] | None:
        return [item.strip() for item in text.split(",")] if text else None

    if render is not None:
        print(command.render_only(render, listed(columns), reference))
        return
    command.check_counts(test_frac, repeats, first_repeat)
    from titok.core.precision import dtype_setting

    settings = command.bench_settings(
        out,
        suites=[*(suite or []), *(["ablations"] if ablations else [])],
        tasks=listed(tasks),
        methods=listed(methods),
        source=source,
        target=target,
        synth_file=synth,
        screen=screen,
        external_queries=external_queries,
        limit=limit,
        m=m,
        seed=seed,
        data_dir=data_dir,
        test_frac=test_frac,
        repeats=repeats,
        first_repeat=first_repeat,
        gradient_checkpointing=gradient_checkpointing,
        repeated=listed(repeat_only),
        only=listed(columns),
        dtype=dtype_setting(dtype),
    )
    _setup_logging(logging.getLogger().handlers[0].level > logging.INFO, out / "bench.log")
    print(command.run(settings))


@app.command()
def report(
    run: RunOption,
    out: Annotated[Path | None, typer.Option(help="HTML file (default RUN/report.html).")] = None,
) -> None:
    """One self-contained HTML page: stages, tokens shaded by excess, alignment, evaluation."""
    from titok.outputs.report import build_report

    print(f"report: {build_report(run, out)}")


@app.command()
def export(
    run: RunOption,
    merged: Annotated[
        Path | None,
        typer.Option(help="Write the target base with the adapter merged in to this directory."),
    ] = None,
    dtype: Annotated[
        str, typer.Option(help="Merged weights: auto (the base's own), float32, bfloat16.")
    ] = "auto",
) -> None:
    """Deployable output: the adapter's card with the run's results; --merged: base + LoRA.

    The adapter's model card is rewritten with the evaluations the run directory holds (Hub
    model-index metadata); --merged saves the target base with the adapter merged in, as a
    transformers directory with its tokenizer and card.
    """
    from titok.outputs.export import export as export_run

    card_file, merged_dir = export_run(run, merged, dtype)
    print(f"adapter card: {card_file}")
    if merged_dir is not None:
        print(f"merged model: {merged_dir}")


@app.command("make-task", rich_help_panel=MORE)
def make_task(
    kind: Annotated[str, typer.Argument(help="The task to generate: facts or rule.")],
    out: Annotated[Path, typer.Option(help="Directory for the task's files.")],
    seed: Annotated[int, typer.Option(help="Seed of the knowledge base or rule.")] = 0,
    entities: Annotated[
        int, typer.Option(help="Invented people in the knowledge base (facts).")
    ] = 30,
) -> None:
    """Write a generated task's files: facts, a fictional knowledge base; rule, an invented rule to apply to new things (docs/facts.md)."""  # noqa: E501  (one line: the help keeps line breaks)
    from titok.core.errors import ConfigError, did_you_mean
    from titok.eval.facts import make_facts, write_facts
    from titok.eval.rule import make_rule, write_rule

    if kind not in ("facts", "rule"):
        raise ConfigError(
            f"unknown task kind '{kind}': titok can make 'facts' or 'rule'"
            f"{did_you_mean(kind, ['facts', 'rule'])}"
        )
    if entities < 1:
        raise ConfigError(f"--entities must be at least 1, got {entities}")
    paths = (
        write_facts(make_facts(seed, entities), out)
        if kind == "facts"
        else write_rule(make_rule(seed), out)
    )
    for path in paths:
        print(path)


@app.command("methods", rich_help_panel=MORE)
def list_methods() -> None:
    """List the transplant methods."""
    from titok.methods import available

    for method in available().values():
        stages = " → ".join(stage.name for stage in method.stages)
        # the result: printed even under -q
        print(f"{method.name}: {method.description}\n    {method.paper}\n    stages: {stages}")


@app.command("settings", rich_help_panel=MORE)
def list_settings(
    section: Annotated[
        str | None, typer.Argument(help="Only this section (synth, select, kd, ...).")
    ] = None,
) -> None:
    """List every setting (YAML key or --set NAME=VALUE), its default and what it does."""
    import titok.methods  # noqa: F401  (registers the methods' own sections, plugins' too)

    for name, default, text in describe_settings(TransplantConfig, section):
        print(f"{name} = {default}\n    {text}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the demo writes its artifacts.")] = Path(
        "runs/demo"
    ),
    task: Annotated[
        str,
        typer.Option(
            help="The task: facts:<seed>[:<people>] moves knowledge with TiTok and KD from the "
            "training questions; another (bbh:boolean_expressions) runs TiTok data-free from 5 "
            "seeds."
        ),
    ] = "facts:0:10",
    m: Annotated[
        int | None,
        typer.Option(help="Samples kept (default: one per fact; 40 for a data-free task)."),
    ] = None,
    k: Annotated[float, typer.Option(help="Share of tokens kept per sample.")] = 0.7,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate on at most this many test examples.")
    ] = None,
    dtype: DtypeOption = "auto",
) -> None:
    """Train a source LoRA on SmolLM2, move it to Gemma-3 with TiTok and KD, evaluate every row."""
    from titok.core.precision import dtype_setting
    from titok.demo import DemoSettings, format_summary, run_demo

    _setup_logging(logging.getLogger().handlers[0].level > logging.INFO, out / "demo.log")
    settings = DemoSettings(
        out=out, task=task, m=m, k=k, seed=seed, test_limit=limit, dtype=dtype_setting(dtype)
    )
    summary = run_demo(settings)
    print(format_summary(summary))


@app.command(rich_help_panel=MORE)
def version() -> None:
    """Print titok's version."""
    print(__version__)


def main() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # The launcher stops the other processes with SIGTERM when one fails: they exit with the
        # same status 2, quietly (the failed one has said why).
        signal.signal(signal.SIGTERM, _stopped_by_launcher)
    try:
        _add_stage_commands(sys.argv[1:])
        status = app(standalone_mode=False)
        # typer turns Ctrl-C into Exit(130), and under standalone_mode=False returns the code
        if status == INTERRUPTED:
            _interrupted()
        elif isinstance(status, int) and not isinstance(status, bool) and status:
            _exit(status)
        distributed = sys.modules.get("titok.core.distributed")  # only a command that used it
        if distributed is not None:  # (importing it imports torch: seconds for `titok version`)
            distributed.finish()
    except TitokError as error:
        _report(str(error))
        _exit(2)
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except Exception as error:
        if _is_usage_error(error):
            message = error.format_message()  # empty: no command given, the help was shown
            if message:
                _report(f"{message} (see `{_usage_command(error)} --help`)")
            _exit(2)
        from titok.core.distributed import lost_a_peer

        if lost_a_peer(error):  # another process failed and said why; this one only stops
            _report("another process of this launch stopped; its error is above")
            _exit(2)
        raise


INTERRUPTED = 130  # the shell's status for a process ended by SIGINT (128 + 2)


def _is_usage_error(error: BaseException) -> bool:
    """A command-line usage error (missing or unknown option, bad value) of click or of the copy
    of click that typer bundles (0.29 and later): duck-typed, so no version's internals count."""
    return callable(getattr(error, "format_message", None)) and isinstance(
        getattr(error, "exit_code", None), int
    )


def _usage_command(error: BaseException) -> str:
    context = getattr(error, "ctx", None)
    return getattr(context, "command_path", None) or "titok"


def _interrupted() -> None:
    """Ctrl-C: one line saying where, and the shell's status 130 (never 0: a script or scheduler
    must not read an interrupted run as a success)."""
    pipeline = sys.modules.get("titok.stages.runner")  # loaded only if a run had started
    stage = pipeline.current_stage() if pipeline else None
    where = f" at {stage}" if stage else ""
    resume = "; rerun the same command to resume" if stage else ""
    _report(f"interrupted{where}{resume}")
    _exit(INTERRUPTED)


def _exit(status: int) -> None:
    # A SIGTERM from the launcher during interpreter shutdown (when Python has put back the
    # default handlers) would turn this status into -15: ignore it from here on.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # The process group is still open and a peer may be gone: interpreter shutdown could
        # abort in gloo's threads (SIGABRT instead of this status). Flush and leave at once.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _stopped_by_launcher(signum: int, frame: object) -> None:
    _exit(2)


def _report(message: str) -> None:
    """Print an error once per launch, naming the process when there are several."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1:  # titok.core.distributed imports torch: only a launch needs it here
        from titok.core.distributed import first_to_report

        if not first_to_report():
            return
    # RANK, not the process group's rank: the error may come before the group exists
    rank = os.environ.get("RANK", "0")
    where = f" (process {rank} of {processes})" if processes > 1 else ""
    console.print(f"[red]error{where}:[/red] {escape(message)}", highlight=False)
