"""The ``rlbasins`` command line.

Exit codes: 0 success; 1 a run failed (some seed did not finish); 2 invalid input (config,
corrupt or missing file); 3 the run directory cannot be used as asked (locked by another
process, finished or unfinished without --overwrite/--resume).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rlbasins import __version__
from rlbasins.config import ConfigError, ExperimentConfig, json_schema, load_config
from rlbasins.store import CorruptFileError, RunDir, StoreError

app = typer.Typer(help="Generalization basins of RL policies: train many PPO seeds, compare their "
                       "held-out behaviour, report.", no_args_is_help=True, add_completion=False)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigArg = Annotated[Path, typer.Argument(help="Experiment YAML file.", show_default=False)]
RunDirArg = Annotated[Path, typer.Argument(help="Run directory, e.g. runs/quickstart.", show_default=False)]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Where run directories are created.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an unfinished run from its last checkpoints.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Delete an existing run of this name first.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


def _handles_errors(command: Callable) -> Callable:
    """Turn the library's errors into one readable message and the documented exit code."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (ConfigError, CorruptFileError, FileNotFoundError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        except StoreError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(3) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: checkpoints so far are kept; continue with "
                      "`rlbasins train CONFIG --resume`", highlight=False)
            raise typer.Exit(130) from None

    return wrapper


def _train(cfg: ExperimentConfig, runs_dir: Path, resume: bool, overwrite: bool, progress: bool) -> RunDir:
    from rlbasins.train import train_experiment

    out.print(f"training [bold]{cfg.name}[/]: {cfg.seeds.count} seeds × {cfg.checkpoint_steps()[-1]:,} env steps "
              f"of {cfg.env.id} (engine {cfg.engine})", highlight=False)
    run = train_experiment(cfg, runs_dir, resume=resume, overwrite=overwrite, show_progress=progress)
    seeds = run.manifest()["seeds"]
    for k, s in seeds.items():
        if s["status"] != "finished":
            err.print(f"[yellow]seed {k} {s['status']}[/] at step {s['last_step']}: {s['error']}", highlight=False)
    done = sum(s["status"] == "finished" for s in seeds.values())
    out.print(f"{done}/{len(seeds)} seeds finished → {run.root}", highlight=False)
    return run


def _analyze(run: RunDir, progress: bool) -> None:
    from rlbasins.analysis.behavior import analyze_behavior

    result = analyze_behavior(run, show_progress=progress)
    out.print(f"analysed {len(result.seeds)} seeds → {run.analysis_dir}", highlight=False)


def _report(run: RunDir) -> Path:
    from rlbasins.report import write_report

    path = write_report(run)
    out.print(f"report → [bold]{path}[/]  (open file://{path.resolve()})", highlight=False)
    return path


@app.command()
@_handles_errors
def run(config: ConfigArg, runs_dir: RunsDirOpt = Path("runs"), resume: ResumeOpt = False,
        overwrite: OverwriteOpt = False, progress: ProgressOpt = True) -> None:
    """Train, analyse and report one experiment."""
    cfg = load_config(config)
    run_dir = _train(cfg, runs_dir, resume, overwrite, progress)
    if run_dir.manifest()["status"] != "finished":
        raise typer.Exit(1)
    if cfg.analysis.enabled:
        _analyze(run_dir, progress)
        _report(run_dir)


@app.command()
@_handles_errors
def train(config: ConfigArg, runs_dir: RunsDirOpt = Path("runs"), resume: ResumeOpt = False,
          overwrite: OverwriteOpt = False, progress: ProgressOpt = True) -> None:
    """Train every seed of an experiment (checkpoints, TensorBoard) without analysing it."""
    run_dir = _train(load_config(config), runs_dir, resume, overwrite, progress)
    if run_dir.manifest()["status"] != "finished":
        raise typer.Exit(1)


@app.command()
@_handles_errors
def analyze(run_dir: RunDirArg, progress: ProgressOpt = True) -> None:
    """Evaluate a trained run on held-out states (writes RUN_DIR/analysis/)."""
    _analyze(RunDir(run_dir), progress)


@app.command()
@_handles_errors
def report(run_dir: RunDirArg) -> None:
    """Write RUN_DIR/report.html from the run's logs and analysis."""
    _report(RunDir(run_dir))


@app.command()
@_handles_errors
def validate(config: ConfigArg) -> None:
    """Check a config without running it; name every bad field."""
    cfg = load_config(config)
    out.print(f"[green]ok[/] {config}: {cfg.name}, {cfg.seeds.count} seeds × {cfg.checkpoint_steps()[-1]:,} "
              f"env steps of {cfg.env.id}, checkpoints at {cfg.checkpoint_steps()}, hash {cfg.hash()[:12]}",
              highlight=False)


@app.command()
def schema(output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None) -> None:
    """Print the JSON schema of experiment configs (for editor completion and checks)."""
    text = json.dumps(json_schema(), indent=2)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        output.write_text(text + "\n")


def _version(value: bool) -> None:
    if value:
        out.print(f"rlbasins {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Show the version and exit.")] = False) -> None:
    """rlbasins command line."""
