"""The ``rlbasins`` command line.

Exit codes: 0 success; 1 a run failed (some seed did not finish); 2 invalid input (config,
corrupt or missing file); 3 the run directory cannot be used as asked (locked by another
process, finished or unfinished without --overwrite/--resume).
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rlbasins import __version__
from rlbasins.core.config import ConfigError, ConfigIssue, ExperimentConfig, json_schema, load_config
from rlbasins.core.store import CorruptFileError, RunDir, StoreError, atomic_write_bytes

app = typer.Typer(help="Generalization basins of RL policies: train many PPO seeds, compare their "
                       "held-out behaviour, report.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigArg = Annotated[Path, typer.Argument(help="Experiment YAML file.", show_default=False)]
RunDirArg = Annotated[Path, typer.Argument(help="Run directory, e.g. runs/quickstart.", show_default=False)]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Where run directories are created.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an unfinished run from its last checkpoints.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Delete an existing run of this name first.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
ScreenshotsOpt = Annotated[Path | None, typer.Option(
    "--screenshots", help="Also load the page in headless Chromium and save PNGs of it and of each section here "
                          "(needs `apt-get install chromium chromium-driver` and selenium).", show_default=False)]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings meant for users (deprecated config keys: FutureWarning) as one line, without the source line."""
    if issubclass(category, FutureWarning):
        err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False)
    else:
        err.print(escape(warnings.formatwarning(message, category, filename, lineno, line).rstrip()), highlight=False)


def _handles_errors(command: Callable) -> Callable:
    """Turn the library's errors into one readable message and the documented exit code."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return command(*args, **kwargs)
        except (ConfigError, CorruptFileError, FileNotFoundError) as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except StoreError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
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


def _ari(agreement) -> str:
    """An :class:`~rlbasins.analysis.basins.Agreement` as the summary line shows it."""
    return agreement.undefined if agreement.ari is None else f"{agreement.ari:.2f}"


def _analyze(run: RunDir, progress: bool, step: int | None = None) -> None:
    from rlbasins.analysis.pipeline import analyze_run

    summary = analyze_run(run, step=step, show_progress=progress)
    basins = f"{summary.behavior_k} behavioural basin{'s' * (summary.behavior_k != 1)}"
    weights = f"{summary.weight_k} in weight space (input weights)"
    agreement = f", agreement ARI {_ari(summary.agreement)}"
    planted = "".join(f", planted-truth ARI ({name}) {_ari(value)}"
                      for name, value in (summary.planted_ari or {}).items())
    verdict = f"; held-out preferences: {summary.verdict}" if summary.verdict else ""
    if summary.outliers:
        basins += f" and {len(summary.outliers)} outlier seed{'s' * (len(summary.outliers) != 1)} " \
                  f"({', '.join(map(str, summary.outliers))})"
    out.print(f"analysed {summary.n_seeds} seeds: {basins}, {weights}{agreement}{planted}{verdict} "
              f"→ {run.analysis_dir}", highlight=False)
    _print_study("early detection", summary.early, lambda early: (
        f"predicting the final {early.target} ({' / '.join(early.class_names)}), first training fraction with "
        f"balanced accuracy ≥ {early.threshold:.0%}: " + ", ".join(
            f"{d.name} " + (f"{d.first_reaching:.0%}" if d.first_reaching is not None else "never")
            for d in early.detectors)))
    _print_study("training length", summary.trajectory, lambda t: (
        f"{len(t.late_switchers)}/{len(t.seeds)} seeds last switch basin after {t.late_fraction:.0%} of training "
        f"({t.late_share:.0%}, 95% CI {t.late_share_ci[0]:.0%}–{t.late_share_ci[1]:.0%}) over {len(t.steps)} "
        "checkpoints"))
    _print_study("basin count", summary.basin_count, lambda c: (
        f"{c.observed} found; {_rarefied(c.rarefaction, len(c.seeds))}; Chao1 {c.unseen[0].chao1:.1f} "
        f"[{c.unseen[0].chao1_ci[0]:.1f}, {c.unseen[0].chao1_ci[1]:.1f}]; most persistent average-linkage count "
        f"{c.resolution.persistent_k or 'none (no plateau stands out)'}"))
    _print_study("init map", summary.init_map, _mapped)
    _print_study("seed factors", summary.seed_factors, _seed_factor_line)
    if summary.symmetry is not None:
        out.print(f"symmetry test — {_symmetry_line(summary.symmetry)}", highlight=False)


def _symmetry_line(result) -> str:
    """A :class:`~rlbasins.analysis.symmetry.SymmetryResult` in one line."""
    a, b = result.cue_labels
    verdict = "PASS" if result.passed else "FAIL: training cannot tell the two features apart"
    line = (f"{verdict}: smallest first-layer asymmetry of the {a} and {b} weights {result.min_asymmetry:.2g} "
            f"over {len(result.seeds)} seeds (threshold {result.threshold:g})")
    if result.heldout_goal_change is not None and max(result.heldout_goal_change) == 0:
        line += ("; the goal-plane weights outside the training region never moved, so every held-out goal is "
                 "read through untrained weights")
    return line


def _print_study(name: str, result: Any, describe: Callable[[Any], str]) -> None:
    """One line per analysis study: its answer, or why it was skipped (nothing when it did not run)."""
    if result is not None:
        out.print(f"{name} skipped: {result.skipped}" if result.skipped else f"{name} — {describe(result)}",
                  highlight=False)


def _mapped(result) -> str:
    """Each map's boundary dimension at the full resolution and on the coarser sub-grids, with 95% intervals."""
    def dimension(box) -> str:
        if box.dimension is None:
            return f"{box.side}²: no boundary"
        ci = f" [{box.dimension_ci[0]:.2f}, {box.dimension_ci[1]:.2f}]" if box.dimension_ci else " (no CI: 2 sizes)"
        return f"{box.side}²: {box.dimension:.2f}{ci}"

    def labels(label_map) -> int:
        return len({code for row in label_map.image for code in row if code >= 0})

    def shuffled(label_map) -> str:
        if label_map.shuffled_dimension is None:
            return ""
        low, high = label_map.shuffled_dimension_ci
        return f" (labels shuffled over the grid: {label_map.shuffled_dimension:.2f} [{low:.2f}, {high:.2f}])"

    return f"{result.resolution}×{result.resolution} grid; boundary box-counting dimension " + "; ".join(
        f"{m.name} ({labels(m)} labels) " + ", ".join(map(dimension, m.box_counting)) + shuffled(m)
        for m in result.maps)


def _seed_factor_line(study) -> str:
    """The headline outcome's init / data / residual variance shares and the basins' information about each."""
    head = study.outcomes[0]
    if head.shares["init"] is None:
        shares = "the same for every seed (nothing to split)"
    else:
        shares = ", ".join(f"{f} {head.shares[f]:.2f} [{head.shares_ci[f][0]:.2f}, {head.shares_ci[f][1]:.2f}]"
                           + (f" (p {head.p_values[f]:.3f})" if f in head.p_values else "")
                           for f in ("init", "data", "residual"))
    line = f"{study.init} × {study.data} grid; variance of {head.outcome}: {shares}"
    basins = study.basins
    if basins is not None and basins.factors is None:
        line += "; one behavioural basin (no basin variance to explain)"
    elif basins is not None:
        line += "; basin information / H(basin): " + ", ".join(
            f"{i.factor} {i.normalised:.2f} (null {i.null_mean:.2f}, p {i.p_value:.3f})" for i in basins.factors)
    if study.distances is not None:
        pairs = study.distances
        line += "; held-out TV between seeds sharing " + ", ".join(
            f"{what} {getattr(pairs, key):.3f} [{pairs.ci[key][0]:.3f}, {pairs.ci[key][1]:.3f}]"
            + (f" (p {pairs.p_values[test]:.3f})" if test else "")
            for what, key, test in (("the init", "same_init", "init"), ("the data", "same_data", "data"),
                                    ("neither", "neither", None)))
    return line


def _rarefied(rare, n_seeds: int) -> str:
    """The rarefaction point nearest half the seeds: 'in random subsets of n of N seeds: mean [low, high]'."""
    i = min(range(len(rare.sizes)), key=lambda j: abs(rare.sizes[j] - n_seeds / 2))
    return (f"in random subsets of {rare.sizes[i]} of {n_seeds} seeds {rare.found_mean[i]:.1f} "
            f"[{rare.found_ci[i][0]:.0f}, {rare.found_ci[i][1]:.0f}]")


def _report(run: RunDir) -> Path:
    from rlbasins.report import write_report
    from rlbasins.studies.diversity import load as load_diversity
    from rlbasins.studies.steering import load as load_steering

    path = write_report(run, steering=load_steering(run), diversity=load_diversity(run))
    out.print(f"report → [bold]{path}[/]  (open file://{path.resolve()})", highlight=False)
    return path


def _screenshots(page: Path, folder: Path) -> None:
    """Load ``page`` in headless Chromium, save its screenshots in ``folder``, say what the browser saw."""
    from rlbasins.report.browser import BrowserUnavailable, open_in_browser

    try:
        check = open_in_browser(page, folder)
    except BrowserUnavailable as exc:
        err.print(f"[bold red]error:[/] cannot take screenshots: {exc}", highlight=False)
        raise typer.Exit(2) from None
    for shot in check.screenshots:
        out.print(f"screenshot → {shot}", highlight=False)
    out.print(f"loaded in {check.load_ms:.0f} ms in headless Chromium ({check.size_bytes / 2**20:.1f} MB, "
              f"{check.images} images)", highlight=False)
    for message in check.console_errors:
        err.print(f"[yellow]console error:[/] {message}", highlight=False)
    for name in check.broken_images:
        err.print(f"[yellow]image did not load:[/] {name}", highlight=False)


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
def analyze(run_dir: RunDirArg, progress: ProgressOpt = True,
            checkpoint: Annotated[int | None, typer.Option(
                "--checkpoint", help="Analyse the checkpoints at this env step (default: each seed's last).")] = None,
            ) -> None:
    """Held-out behaviour, Git Re-Basin alignment, barriers and basins of a trained run (writes RUN_DIR/analysis/)."""
    _analyze(RunDir(run_dir), progress, checkpoint)


@app.command()
@_handles_errors
def symmetry(run_dir: RunDirArg,
             checkpoint: Annotated[int | None, typer.Option(
                 "--checkpoint", help="Compare step 0 with this env step (default: each seed's last).")] = None,
             threshold: Annotated[float, typer.Option(
                 "--threshold", help="Smallest asymmetry that passes.")] = 0.01) -> None:
    """Could training tell the two strategies' features apart? Compare the first-layer weight changes on the two
    cues' planes (GoalOrPlace: on the goal plane's cells and the agent plane) (writes RUN_DIR/analysis/symmetry.json;
    exit 1 when the test fails)."""
    from rlbasins.analysis.symmetry import symmetry_test

    run = RunDir(run_dir)
    manifest = run.manifest()
    cfg = load_config(run.config_path)
    seeds = run.seeds_with_status(manifest, "finished")
    try:
        result = symmetry_test(run, cfg, seeds, checkpoint, threshold)
    except ValueError as exc:                     # not a two-cue env, or untrained
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    run.analysis_dir.mkdir(exist_ok=True)
    result.save(run.analysis_dir / "symmetry.json")
    layers = list(result.asymmetry)
    table = Table("seed", *(f"{layer} asymmetry" for layer in layers), *(f"{layer} denominator" for layer in layers),
                  title=f"asymmetry {result.statistic} and its denominator ({result.cue_labels[0]} vs "
                        f"{result.cue_labels[1]} features, step 0 → {max(result.steps):,})")
    for i, k in enumerate(result.seeds):
        table.add_row(str(k), *(f"{result.asymmetry[layer][i]:.2g}" for layer in layers),
                      *(f"{result.shared_change[layer][i]:.3g}" for layer in layers))
    out.print(table)
    out.print(_symmetry_line(result) + f" → {run.analysis_dir / 'symmetry.json'}", highlight=False)
    if not result.passed:
        raise typer.Exit(1)


@app.command()
@_handles_errors
def report(run_dir: RunDirArg, screenshots: ScreenshotsOpt = None) -> None:
    """Write RUN_DIR/report.html from the run's logs and analysis."""
    path = _report(RunDir(run_dir))
    if screenshots is not None:
        _screenshots(path, screenshots)


@app.command()
@_handles_errors
def compare(
    a: Annotated[str, typer.Argument(help="RUN_DIR:SEED[@STEP], e.g. runs/planted_basins:0", show_default=False)],
    b: Annotated[str, typer.Argument(help="RUN_DIR:SEED[@STEP] (same env and architecture)", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file (default: compare_A_vs_B.html "
                                                "in A's run directory).")] = None,
    screenshots: ScreenshotsOpt = None,
) -> None:
    """Behavioural diff of two policies: agreement on held-out states, where they differ, barriers."""
    from rlbasins.report.compare import PolicyRef
    from rlbasins.report.compare import compare as diff

    ref_a, ref_b = PolicyRef.parse(a, "A"), PolicyRef.parse(b, "B")
    for ref in (ref_a, ref_b):
        ref.run.manifest()  # a clear error for a directory that is not a run
    path = output or ref_a.run.root / f"compare_{ref_a.seed}_vs_{ref_b.run.root.name}_{ref_b.seed}.html"
    result = diff(ref_a, ref_b, path)
    out.print(f"[bold]{result.a}[/] vs [bold]{result.b}[/] on {result.n_states} held-out states of "
              f"{result.env_id}: greedy agreement {result.agreement:.2f}, mean total variation "
              f"{result.total_variation:.2f}", highlight=False)
    for name, label in result.labels.items():
        out.print(f"  {name}: held-out strategy {label}", highlight=False)
    for variant, barriers in result.barriers.items():
        out.print(f"  {variant} barrier: " + ", ".join(f"{m} {v:.3g}" for m, v in barriers.items()), highlight=False)
    out.print(f"diff → [bold]{path}[/]", highlight=False)
    if screenshots is not None:
        _screenshots(path, screenshots)


EnvOpt = Annotated[str | None, typer.Option("--env", help="Gymnasium id of the env the policies act in, e.g. "
                                            "CartPole-v1 (its spaces are checked against the files').",
                                            show_default=False)]
EnvKwargsOpt = Annotated[str | None, typer.Option("--env-kwargs", help="The env's kwargs as a YAML/JSON mapping, e.g. "
                                                  "'{size: 4, code_length: 1}'.", show_default=False)]
BaseConfigOpt = Annotated[Path | None, typer.Option("--config", help="Take the env and the analysis settings from "
                                                    "this experiment YAML instead of --env.", show_default=False)]
NameOpt = Annotated[str | None, typer.Option("--name", help="Experiment name (default: the run directory's name).",
                                             show_default=False)]
ImportOutOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Run directory to create (default: "
                                                   "runs/NAME).", show_default=False)]


def _env_kwargs(text: str | None) -> dict[str, Any]:
    import yaml

    value = yaml.safe_load(text) if text else {}
    if not isinstance(value, dict):
        raise ConfigError("--env-kwargs", [ConfigIssue(path="--env-kwargs", value=text, expected="a mapping, e.g. "
                                                       "'{size: 4}'")])
    return value


def _import_target(sources: list[Path], name: str | None, output: Path | None) -> tuple[str, Path]:
    name = name or (output.name if output else sources[0].stem)
    return name, output or Path("runs") / name


def _print_imported(run: RunDir) -> None:
    manifest, cfg = run.manifest(), load_config(run.config_path)
    checkpoints = sum(len(s["sources"]) for s in manifest["seeds"].values())
    out.print(f"[green]imported[/] {len(manifest['seeds'])} seeds ({checkpoints} checkpoints) of {cfg.env.id}, "
              f"policy {cfg.policy.hidden_sizes} {cfg.policy.activation} → [bold]{run.root}[/]; next: "
              f"`rlbasins analyze {run.root}` and `rlbasins report {run.root}`", highlight=False)


@app.command("import-sb3")
@_handles_errors
def import_sb3(
    sources: Annotated[list[Path], typer.Argument(help="SB3 PPO zips, one per seed; a folder of zips is one seed "
                                                  "whose zips are its checkpoints.", show_default=False)],
    env: EnvOpt = None, env_kwargs: EnvKwargsOpt = None, config: BaseConfigOpt = None, name: NameOpt = None,
    output: ImportOutOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Turn Stable-Baselines3 PPO zips (MlpPolicy, Discrete actions) into a run directory, without unpickling."""
    from rlbasins.train.interop import import_sb3 as run_import

    name, target = _import_target(sources, name, output)
    _print_imported(run_import(sources, target, env_id=env, env_kwargs=_env_kwargs(env_kwargs), config=config,
                               name=name, overwrite=overwrite))


@app.command("import-torch")
@_handles_errors
def import_torch(
    layout: Annotated[Path, typer.Argument(help="YAML layout: actor and critic key prefixes, activation "
                                           "(see docs/import.md).", show_default=False)],
    sources: Annotated[list[Path], typer.Argument(help="Safetensors state dicts, one per seed; a folder of "
                                                  "<step>.safetensors files is one seed.", show_default=False)],
    env: EnvOpt = None, env_kwargs: EnvKwargsOpt = None, config: BaseConfigOpt = None, name: NameOpt = None,
    output: ImportOutOpt = None, overwrite: OverwriteOpt = False,
) -> None:
    """Turn plain-torch (CleanRL-style nn.Sequential) actor-critics into a run directory."""
    from rlbasins.train.interop import import_torch as run_import

    name, target = _import_target(sources, name, output)
    _print_imported(run_import(layout, sources, target, env_id=env, env_kwargs=_env_kwargs(env_kwargs),
                               config=config, name=name, overwrite=overwrite))


@app.command()
@_handles_errors
def export(
    ref: Annotated[str, typer.Argument(help="RUN_DIR:SEED[@STEP], e.g. runs/quickstart:3", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The SB3 zip to write.", show_default=False)],
) -> None:
    """Write one seed as a Stable-Baselines3 PPO zip (`PPO.load(FILE, env=...)` loads it; MLP policies)."""
    from rlbasins.report.compare import PolicyRef
    from rlbasins.train.interop import export_sb3

    policy = PolicyRef.parse(ref, "REF")
    policy.run.manifest()
    path = export_sb3(policy.run, policy.seed, policy.step, output)
    out.print(f"exported {ref} → [bold]{path}[/] (load with stable_baselines3.PPO.load)", highlight=False)


@app.command()
@_handles_errors
def steer(config: ConfigArg, runs_dir: RunsDirOpt = Path("runs"), resume: ResumeOpt = False,
          overwrite: OverwriteOpt = False, progress: ProgressOpt = True,
          calibration: Annotated[Path | None, typer.Option(
              "--calibration", help="Calibration run directory (default: the config's steering.calibration).",
              show_default=False)] = None) -> None:
    """Steering by abort: train seeds until steering.k finish in the target basin, aborting at the check
    those predicted elsewhere; writes analysis/steering.json and the report (see docs/steering.md)."""
    from rlbasins.studies.steering import SteeringError
    from rlbasins.studies.steering import steer as run_steering

    cfg = load_config(config)
    if cfg.steering is None:
        raise ConfigError(str(config), [ConfigIssue(path="steering", value=None,
                                                     expected="a steering section (see configs/steering.yaml)")])
    st = cfg.steering
    out.print(f"steering [bold]{cfg.name}[/]: {st.k} seeds ending in '{st.target}', check at step "
              f"{cfg.steering_check_step():,} of {cfg.checkpoint_steps()[-1]:,}, waves of {st.wave}", highlight=False)
    try:
        result = run_steering(cfg, runs_dir, resume=resume, overwrite=overwrite, show_progress=progress,
                              calibration=calibration)
    except SteeringError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    c, base = result.compute, result.baseline
    measured = base.get("measured")
    versus = (f"; without steering on the same seeds {measured['steps']:,}{'+' if measured['lower_bound'] else ''} "
              f"(ratio {measured['ratio']:.2f})") if measured else ""
    wrong = result.wrong_aborts
    out.print(f"{'reached' if result.reached else 'NOT reached'}: {result.purity['target_finished']} target seeds; "
              f"{c['steering_steps']:,} env steps ({c['seeds_started']} started, {c['seeds_continued']} continued, "
              f"{c['seeds_aborted']} aborted){versus}; purity {result.purity['value'] or 0:.2f}; "
              + (f"wrong aborts {wrong['count']}/{wrong['aborted']}" if wrong else "wrong aborts not audited"),
              highlight=False)
    run_dir = RunDir(Path(runs_dir) / cfg.name)
    _report(run_dir)
    if not result.reached:
        raise typer.Exit(1)


@app.command()
@_handles_errors
def diversify(config: ConfigArg, runs_dir: RunsDirOpt = Path("runs"), resume: ResumeOpt = False,
              overwrite: OverwriteOpt = False, progress: ProgressOpt = True,
              method: Annotated[list[str] | None, typer.Option(
                  "--method", help="ridge, random (ridge's control) or iid; repeat for several (default: all). "
                  "iid, the baseline, always runs.", show_default=False)] = None,
              budget: Annotated[int | None, typer.Option(
                  "--budget", help="Env steps per method (default: diversity.budget, else seeds.count × "
                  "ppo.total_timesteps).", show_default=False, min=1)] = None) -> None:
    """Diversity search: basins found per env step by Ridge Rider branches, random branches and i.i.d. seeds at
    equal compute; writes RUNS_DIR/<name>/diversity.json and the report (docs/diversity.md)."""
    from rlbasins.studies.diversity import METHODS, DiversityError
    from rlbasins.studies.diversity import diversify as run_diversify

    cfg = load_config(config)
    methods = tuple(method or METHODS)
    try:
        result = run_diversify(cfg, runs_dir, methods=methods, budget=budget, resume=resume, overwrite=overwrite,
                               show_progress=progress)
    except DiversityError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    table = Table(title=f"{result.basins} basins pooled; budget {result.budget:,} env steps per method")
    for column in ("method", "seeds", "env steps (Hessian)", "basins by B/2", "basins by B", "rarest basin share",
                   "trained"):
        table.add_column(column)
    for m in result.methods:
        table.add_row(m.method, str(len(m.seeds)), f"{m.env_steps + m.search_steps:,} ({m.search_steps:,})",
                      f"{result.found_at(m.method, result.budget / 2):.2f}",
                      f"{result.found_at(m.method, result.budget):.2f}",
                      f"{m.basin_shares[result.rarest_basin]:.2f}", f"{m.trained}/{len(m.seeds)}")
    out.print(table)
    for m in result.methods:
        if m.method != "iid":
            split = f"; {m.pairs_split[0]}/{m.pairs_split[1]} ± branch pairs ended in different basins" \
                if m.pairs_split else ""
            out.print(f"{m.method} {'beats' if result.beats_iid(m.method) else 'does not beat'} iid (the basins iid "
                      f"finds with the budget, found with half of it){split}", highlight=False)
    _report(RunDir(Path(runs_dir) / cfg.name))


@app.command()
@_handles_errors
def sweep(config: ConfigArg, runs_dir: RunsDirOpt = Path("runs"), resume: ResumeOpt = False,
          progress: ProgressOpt = True) -> None:
    """Scale and architecture sweep: train, analyse and report one run per sweep setting (finished ones are
    reused), then compare their basins; writes RUNS_DIR/<name>/sweep.json and sweep.html (docs/sweep.md)."""
    from rlbasins.report import write_report
    from rlbasins.report.sweep import write_sweep_report
    from rlbasins.studies.sweep import network_name, run_sweep, sweep_dir

    cfg = load_config(config)
    if cfg.sweep is None:
        raise ConfigError(str(config), [ConfigIssue(path="sweep", value=None,
                                                     expected="a sweep section (see configs/sweep_width.yaml)")])

    def announce(setting: str, member: ExperimentConfig) -> None:
        out.print(f"setting [bold]{setting}[/] → {runs_dir / member.name}: policy {network_name(member.policy)}, "
                  f"{member.seeds.count} seeds × {member.checkpoint_steps()[-1]:,} steps",
                  highlight=False)

    result = run_sweep(cfg, write_report, runs_dir, resume=resume, show_progress=progress, on_member=announce)
    _print_sweep(result)
    page = write_sweep_report(result, sweep_dir(cfg, runs_dir))
    out.print(f"sweep → [bold]{page}[/]  (open file://{page.resolve()})", highlight=False)


def _print_sweep(result) -> None:
    """The sweep's table (label shares with Wilson CIs per setting) and its tests, on the console."""
    from rich.table import Table

    def interval(pair: list[float]) -> str:
        return f"[{pair[0]:.2f}, {pair[1]:.2f}]"

    table = Table(title=f"sweep {result.name}: dominant held-out label of each seed")
    for column in ("setting", "network", "params", "seeds", "basins (majority labels)",
                   *(f"{label} share" for label in result.labels), "barrier within / across",
                   f"trained ≥ {result.success_fraction:.0%}"):
        table.add_column(column, justify="left" if column in ("setting", "network") else "right")
    for s in result.settings:
        barriers = " / ".join("–" if v is None else f"{v:.3f}" for v in (s.barrier_within, s.barrier_across))
        table.add_row(s.name, s.network, f"{s.parameters:,}",
                      str(s.n_seeds), f"{s.behavior_k} ({', '.join(str(label) for label in s.basin_labels)})",
                      *(f"{s.label_shares[label]:.2f} {interval(s.label_share_ci[label])}" for label in result.labels),
                      barriers, "–" if s.trained_share is None
                      else f"{s.trained_share:.2f} {interval(s.trained_share_ci)}")
    # one line per setting: a terminal's own width, else (logs, pipes) wider than rich's 80 columns
    (out if out.is_terminal else Console(soft_wrap=True, width=160)).print(table)
    h = result.homogeneity
    tested = (f"χ² = {h.statistic:.2f}, df {h.dof}, p = {h.p:.3g} ({h.method})" if h.statistic is not None
              else h.note)
    trends = "; ".join(f"{t.label} ρ = {t.rho:.2f} {interval(t.rho_ci)}" for t in result.trends if t.rho is not None)
    graded = "; ".join(f"{g.label} p = {g.p:.3g}" for g in result.graded if g.statistic is not None)
    out.print(f"homogeneity of label shares across settings: {tested}"
              + (f"; trend with log₂ parameters: {trends}" if trends else "")
              + (f"; episode shares across settings (Kruskal–Wallis): {graded}" if graded else "")
              + f"; basin labels in every setting: {', '.join(result.persistent_labels) or 'none'}", highlight=False)


@app.command("map")
@_handles_errors
def basin_map(config: ConfigArg, runs_dir: RunsDirOpt = Path("runs"), resume: ResumeOpt = False,
              progress: ProgressOpt = True) -> None:
    """Basin map: train the config at every value of each basin_map knob (finished points are reused) and
    measure where seeds split; writes RUNS_DIR/<name>/basin_map.json and basin_map.png (docs/basin_map.md)."""
    import base64

    from rlbasins.report.figures import basin_map as map_figure
    from rlbasins.studies.basin_map import run_basin_map

    cfg = load_config(config)
    if cfg.basin_map is None:
        raise ConfigError(str(config), [ConfigIssue(path="basin_map", value=None, expected="a basin_map section "
                                                     "(see configs/basin_map.yaml)")])

    def announce(knob: str | None, value: Any, member: ExperimentConfig) -> None:
        point = "base" if knob is None else f"{knob} = {value}"
        out.print(f"point [bold]{point}[/] → {runs_dir / member.name}: {member.seeds.count} seeds × "
                  f"{member.checkpoint_steps()[-1]:,} steps", highlight=False)

    result = run_basin_map(cfg, runs_dir, resume=resume, show_progress=progress, on_point=announce)
    _print_basin_map(result)
    folder = Path(runs_dir) / cfg.name
    figure = folder / "basin_map.png"
    atomic_write_bytes(figure, base64.b64decode(map_figure(result).split(",", 1)[1]))
    out.print(f"basin map → [bold]{folder / 'basin_map.json'}[/] and [bold]{figure}[/]", highlight=False)


def _print_basin_map(result) -> None:
    """The map's table, one row per point: committed shares with Wilson CIs, undecided, bimodality, basins,
    training."""

    def share(s) -> str:
        return f"{s.share:.2f} [{s.ci[0]:.2f}, {s.ci[1]:.2f}]"

    table = Table(title=f"basin map {result.name}: seeds committed (exact binomial p < {result.alpha:g} over the "
                  f"held-out states)")
    for column in ("knob", "value", "seeds", *(f"→ {label}" for label in result.strategies), "undecided",
                   "Sarle", "dip p", "basins", "train return (min)", f"trained ≥ {result.success:.0%}", "seconds"):
        table.add_column(column, justify="left" if column in ("knob", "value") else "right")

    def row(p, knob: str, value: Any) -> None:
        table.add_row(knob, str(value), str(p.n_seeds), *(share(p.committed[label]) for label in result.strategies),
                      f"{p.undecided:.1%}",
                      "–" if p.bimodality_coefficient is None else f"{p.bimodality_coefficient:.2f}",
                      "–" if p.dip_p is None else f"{p.dip_p:.2g}", str(p.basins),
                      f"{p.train_return:.2f} ({p.train_return_min:.2f})",
                      "–" if p.trained is None else share(p.trained), f"{p.seconds:.0f}")

    row(result.base, "base", "")
    for p in result.points:
        if p.run_dir != result.base.run_dir:
            row(p, p.knob, p.value)
    (out if out.is_terminal else Console(soft_wrap=True, width=180)).print(table)
    out.print(f"resolving power: a basin of {result.base.resolving_share:.1%} of the seeds or more shows at least "
              f"one of {result.base.n_seeds} seeds with 95% probability", highlight=False)


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


bench_app = typer.Typer(help="Speed benchmarks: print numbers and ratios, optionally write JSON.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("envs")
def bench_envs(
    env: Annotated[list[str] | None, typer.Option("--env", help="Env id (repeatable); default: all grid envs.")] = None,
    num_envs: Annotated[list[int] | None, typer.Option("--num-envs", help="Batch sizes (repeatable).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    seconds: Annotated[float, typer.Option(help="Length of one timed window.")] = 0.5,
    repeats: Annotated[int, typer.Option(help="Timed windows; the median is reported.")] = 5,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the results as JSON.")] = None,
) -> None:
    """Batched env-steps/s of the gridworld cores vs the gymnasium single-env view."""
    from rich.table import Table

    import envs
    from rlbasins.bench import bench_envs as measure
    from rlbasins.bench import write_json

    result = measure(env or list(envs.GRID_ENVS), num_envs or [1, 64, 4096], device, seconds, repeats)
    table = Table(title=f"batched env cores on {device} ({result['threads']} torch threads)")
    table.add_column("env", no_wrap=True)
    for column in ("envs", "env-steps/s", "gymnasium 1 env", "× gymnasium"):
        table.add_column(column, justify="right")
    for row in result["results"]:
        table.add_row(row["env"], f"{row['num_envs']:,}", f"{row['env_steps_per_s']:,.0f}",
                      f"{row['gymnasium_single_env_steps_per_s']:,.0f}", f"{row['ratio_to_gymnasium']:,.1f}×")
    out.print(table)
    write_json(result, output)


@bench_app.command("grid")
@_handles_errors
def bench_grid(
    env: Annotated[str, typer.Option("--env", help="Env id.")] = "rlbasins/CueConflict-v0",
    settings: Annotated[int, typer.Option(help="Settings in the grid (each its own lr and entropy).")] = 8,
    seeds: Annotated[int, typer.Option(help="Seeds per setting.")] = 32,
    epochs: Annotated[int, typer.Option(help="PPO epochs per iteration.")] = 4,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    iterations: Annotated[int, typer.Option(help="Timed PPO iterations of each (alternating).")] = 5,
    vary: Annotated[str, typer.Option(help="ppo: each setting its lr and entropy; env: its env variant "
                                           "(a two-cue env's nuisance).")] = "ppo",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the results as JSON.")] = None,
) -> None:
    """A grid of settings trained as one lockstep batch vs the same number of seeds of one setting."""
    from rlbasins.bench import bench_grid as measure
    from rlbasins.bench import write_json

    if vary not in ("ppo", "env"):
        raise typer.BadParameter(f"--vary must be ppo or env, got {vary!r}")
    result = measure(env, settings, seeds, epochs, device, iterations=iterations, vary=vary)
    rates = result["env_steps_per_s"]
    out.print(f"{env}, {settings} settings × {seeds} seeds on {device}: grid {rates['grid']:,.0f} env-steps/s, "
              f"{settings * seeds} seeds of one setting {rates['one setting']:,.0f} → grid / one setting "
              f"{result['grid_over_one_setting']:.2f}", highlight=False)
    write_json(result, output)


@bench_app.command("ppo")
@_handles_errors
def bench_ppo(
    env: Annotated[str, typer.Option("--env", help="Env id (with --reward-model: the card's env).")] = "CartPole-v1",
    seeds: Annotated[list[int] | None, typer.Option("--seeds", help="Seed counts (repeatable).")] = None,
    epochs: Annotated[int, typer.Option(help="PPO epochs per iteration (SB3 default 10, CleanRL 4).")] = 10,
    device: Annotated[str, typer.Option(help="Device of the batched engine: cpu or cuda.")] = "cpu",
    sb3_steps: Annotated[int, typer.Option(help="Env steps per SB3 process.")] = 20_000,
    n_steps: Annotated[int, typer.Option(help="Rollout steps per env (8 envs per seed).")] = 128,
    batch_size: Annotated[int, typer.Option(help="PPO minibatch size.")] = 256,
    hidden: Annotated[list[int] | None, typer.Option("--hidden", help="Actor and critic widths (repeatable; "
                                                                        "default 64 64).")] = None,
    reward_model: Annotated[Path | None, typer.Option(
        "--reward-model", help="A frozen reward model's card: time the engine on it against the env's own reward "
                               "(the card's env and kwargs; no SB3, no floor).")] = None,
    iterations: Annotated[int, typer.Option(help="Timed PPO iterations per batched measurement (the median).")] = 5,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the results as JSON.")] = None,
) -> None:
    """SB3 PPO on every core vs the batched engine at several seed counts, the compute floor, and memory.

    Each batched measurement runs in a fresh process; its peak resident memory is reported, and on
    CUDA also the peak GPU memory allocated. Host syncs are counted in one iteration."""
    from rich import box
    from rich.table import Table

    from rlbasins.bench import bench_ppo as measure
    from rlbasins.bench import write_json

    counts = seeds or ([1, 64, 256, 1024] if device == "cuda" else [1, 16, 64])
    widths = tuple(hidden or (64, 64))
    if reward_model is not None:
        _bench_learned_reward(reward_model, counts, epochs, device, n_steps, batch_size, widths, iterations, output)
        return
    result = measure(env, counts, epochs, device, sb3_steps, n_steps, batch_size, widths, iterations)
    out.print(f"SB3 PPO, {result['cores']} processes: {result['sb3_all_cores_env_steps_per_s']:,.0f} env-steps/s "
              f"({env}, {epochs} epochs, 8 envs × {n_steps} steps, minibatch {batch_size})", highlight=False)
    table = Table(title=f"batched engine on {device}", box=box.SIMPLE_HEAD,
                  caption="× SB3: over SB3 on all cores · floor/K: the env-steps/s bound · collect: the rollouts' "
                          "share of an iteration · syncs: host syncs per iteration · MB/seed: peak memory per extra "
                          "seed")
    columns = ["seeds", "env-steps/s", "× SB3", "floor/K", "of floor", "collect", "syncs", "RSS MB", "MB/seed"]
    on_device = device == "cuda"
    if on_device:
        columns += ["GPU MB", "GPU MB/seed"]
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)

    def megabytes(count: float | None, digits: int) -> str:
        return "–" if count is None else f"{count / 2**20:,.{digits}f}"

    for row in result["batched"]:
        cells = [f"{row['seeds']:,}", f"{row['env_steps_per_s']:,.0f}", f"{row['ratio_to_sb3']:.2f}×",
                 f"{row['floor_env_steps_per_s']:,.0f}", f"{row['fraction_of_floor']:.0%}",
                 f"{row['collect_share']:.0%}", f"{row['host_syncs_per_iteration']:,}",
                 megabytes(row["peak_rss_bytes"], 0), megabytes(row["rss_bytes_per_extra_seed"], 2)]
        if on_device:
            cells += [megabytes(row["peak_device_bytes"], 0), megabytes(row["device_bytes_per_extra_seed"], 2)]
        table.add_row(*cells)
    (out if out.is_terminal else Console(soft_wrap=True, width=120)).print(table)  # a log file: no 80-column crop
    write_json(result, output)


def _bench_learned_reward(card: Path, counts: list[int], epochs: int, device: str, n_steps: int, batch_size: int,
                          hidden: tuple[int, ...], iterations: int, output: Path | None) -> None:
    """``bench ppo --reward-model``: the engine on the learned reward vs the env's own, and the model's share."""
    from rich import box
    from rich.table import Table

    from rlbasins.bench import bench_learned_reward, write_json

    result = bench_learned_reward(card, counts, epochs, device, n_steps, batch_size, hidden, iterations)
    table = Table(title=f"batched engine on {device}: {result['env']} {result['env_kwargs']}, {epochs} epochs, "
                        f"widths {list(hidden)}", box=box.SIMPLE_HEAD,
                  caption="slowdown: env reward / learned reward · model s/it: the reward model's forward passes "
                          "alone, per PPO iteration · share: of the learned iteration")
    for column in ("seeds", "env reward", "learned reward", "slowdown", "model s/it", "share"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in result["rows"]:
        table.add_row(f"{row['seeds']:,}", f"{row['env_reward_env_steps_per_s']:,.0f}",
                      f"{row['learned_reward_env_steps_per_s']:,.0f}", f"{row['slowdown']:.2f}×",
                      f"{row['model_seconds_per_iteration']:.3f}", f"{row['model_share_of_learned_iteration']:.0%}")
    out.print(table)
    write_json(result, output)


@bench_app.command("equivalence")
@_handles_errors
def bench_equivalence(
    config: Annotated[Path, typer.Argument(help="Experiment YAML whose hyper-parameters both engines use.",
                                           show_default=False)],
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per engine.")] = 32,
    steps: Annotated[int, typer.Option(help="Env steps per seed (mid-learning separates engines best).")] = 100_000,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where the two runs are written.")] = Path("runs"),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the results as JSON.")] = None,
) -> None:
    """Does the batched engine learn like SB3 on this config? Final-return IQMs with 95% bootstrap CIs."""
    from rich.table import Table

    from rlbasins.bench import bench_equivalence as measure
    from rlbasins.bench import write_json

    result = measure(config, seeds, steps, runs_dir)
    table = Table(title=f"{result['env']}: {seeds} seeds × {steps:,} steps per engine, final greedy training return")
    for column in ("engine", "IQM", "95% CI", "train s"):
        table.add_column(column, justify="right")
    for engine, row in result["engines"].items():
        low, high = row["iqm_ci95"]
        table.add_row(engine, f"{row['iqm']:.3f}", f"[{low:.3f}, {high:.3f}]", f"{row['train_seconds']:.0f}")
    out.print(table)
    out.print(f"intervals {'overlap' if result['cis_overlap'] else '[bold red]do not overlap[/]'}; batched trained "
              f"{result['speedup']:.1f}× faster", highlight=False)
    write_json(result, output)


@bench_app.command("analysis")
def bench_analysis(
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds to analyse (trained first unless --run).")] = 64,
    steps: Annotated[int, typer.Option(help="Env steps per seed of the run trained for the benchmark.")] = 50_000,
    run_dir: Annotated[Path | None, typer.Option("--run", help="Analyse this trained run instead.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the results as JSON.")] = None,
) -> None:
    """Seconds per stage of the full analysis (behaviour, basins, alignment, barriers, paths) of N seeds."""
    from rich.table import Table

    from rlbasins.bench import bench_analysis as measure
    from rlbasins.bench import write_json

    result = measure(seeds, steps, run_dir, device)
    if result["train_seconds"] is not None:
        out.print(f"trained {seeds} CueConflict seeds × {steps:,} steps in {result['train_seconds']:.0f} s "
                  "(not counted)", highlight=False)
    table = Table(title=f"rlbasins analyze, {result['seeds']} seeds, {result['threads']} torch threads")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for stage, seconds in result["stages"].items():
        table.add_row(stage, f"{seconds:.1f}")
    table.add_row("[bold]total[/]", f"[bold]{result['total_seconds']:.1f}[/]")
    out.print(table)
    out.print(f"{result['total_seconds']:.0f} s = {result['fraction_of_target']:.0%} of the "
              f"{result['target_seconds']:.0f} s target for {result['target_seeds']} seeds on 2 CPU cores",
              highlight=False)
    write_json(result, output)


rm_app = typer.Typer(help="Frozen learned reward models: build, inspect, and check PPO trained on them.",
                     no_args_is_help=True)
app.add_typer(rm_app, name="rm")
DataDirOpt = Annotated[Path, typer.Option("--data-dir", help="Where the preference datasets are written.")]


def _print_card(card: dict, where: Path) -> None:
    m = card["metrics"]
    cue = m["cue_preference"]

    def number(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    out.print(f"[bold]{where}[/]: {card['env_id']} ({card['view']} view, {card['architecture']['arch']} over "
              f"{', '.join(card['inputs'])}, {card['architecture']['parameters']:,} parameters), weights sha256 "
              f"{card['weights_sha256'][:12]}…, data sha256 {card['data']['sha256'][:12]}…\n"
              f"  preference accuracy {m['preference_accuracy']:.1%} on {m['test_pairs_decided']} held-out pairs; "
              f"correlation with the true reward {number(m['correlation_train'])} (training states), "
              f"{number(m['correlation_heldout'])} (held-out)\n"
              f"  held-out cue preference: [bold]{cue['prefers']}[/] (share of states "
              + ", ".join(f"{k} {v:.0%}" for k, v in cue["share_of_states"].items()) + ")", highlight=False)
    if "ppo" in card:
        ppo = card["ppo"]
        out.print(f"  PPO on it ({ppo['seeds']} seeds, {ppo['engine']}, {ppo['total_timesteps']:,} steps): true return "
                  f"{ppo['fraction_of_optimum_mean']:.1%} of the optimum on average, "
                  f"{ppo['fraction_of_optimum_min']:.1%} for the worst seed", highlight=False)


@rm_app.command("train")
@_handles_errors
def rm_train(recipe: Annotated[Path, typer.Argument(help="Reward-model recipe YAML (see reward_models/zoo/*.yaml).",
                                                    show_default=False)],
             output: Annotated[Path, typer.Option("--out", "-o", help="The card to write (weights beside it).")],
             data_dir: DataDirOpt = Path("runs/rm")) -> None:
    """Collect preferences, train, evaluate and freeze one reward model."""
    from reward_models.build import build_reward_model
    from reward_models.config import load_rm_config

    _print_card(build_reward_model(load_rm_config(recipe), output, data_dir), output)


@rm_app.command("build")
@_handles_errors
def rm_build(names: Annotated[list[str] | None, typer.Argument(help="Zoo models (default: all).")] = None,
             data_dir: DataDirOpt = Path("runs/rm")) -> None:
    """Rebuild the shipped reward models in reward_models/zoo/ from their recipes (deterministic on CPU)."""
    from reward_models.zoo.build import ZOO_DIR, build_zoo

    for name, card in build_zoo(names, data_dir).items():
        _print_card(card, ZOO_DIR / f"{name}.json")


@rm_app.command("show")
@_handles_errors
def rm_show(path: Annotated[Path, typer.Argument(help="A reward model's card (.json) or weights.",
                                                 show_default=False)]) -> None:
    """Check a reward model's sha256 and print its card's metrics."""
    from reward_models.artifact import load_reward_model
    from rlbasins.core.reward_card import card_path

    _print_card(load_reward_model(path).card, card_path(path))


@rm_app.command("ppo")
@_handles_errors
def rm_ppo(config: ConfigArg, runs_dir: RunsDirOpt = Path("runs"), progress: ProgressOpt = True,
           states: Annotated[int, typer.Option(help="Training start states per seed.")] = 1000) -> None:
    """Train CONFIG (a config with reward_model; a finished run is reused) and write the greedy true return
    of its seeds on training states, against the optimum, onto the reward model's card."""
    from reward_models.ppo_check import true_return_of_run
    from rlbasins.core.reward_card import card_path
    from rlbasins.core.store import atomic_write_json, read_json

    cfg = load_config(config)
    if cfg.reward_model is None:
        raise ConfigError(str(config), [ConfigIssue(path="reward_model", value=None,
                                                    expected="the path of the reward model to check")])
    run_dir = _train(cfg, runs_dir, resume=True, overwrite=False, progress=progress)
    result = true_return_of_run(run_dir, n_states=states)
    card_file = card_path(cfg.reward_model)
    card = read_json(card_file)
    card["ppo"] = {**result, "config": str(config), "run": run_dir.root.name}
    atomic_write_json(card_file, card)
    _print_card(card, card_file)


@app.command("render-env")
@_handles_errors
def render_env(
    env_id: Annotated[str, typer.Argument(help="A gridworld id, e.g. rlbasins/CueConflict-v0.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG files.")] = Path("frames"),
    count: Annotated[int, typer.Option(help="Frames of each kind.")] = 1,
    seed: Annotated[int, typer.Option(help="Which states to draw.")] = 0,
) -> None:
    """Draw training and held-out start states of an environment as PNG files."""
    import matplotlib.pyplot as plt

    import envs

    if env_id not in envs.GRID_ENVS:
        raise ConfigError("render-env", [ConfigIssue(path="ENV_ID", value=env_id,
                                                     expected=f"one of {', '.join(envs.GRID_ENVS)}")])
    core_class = envs.GRID_ENVS[env_id]
    out_dir.mkdir(parents=True, exist_ok=True)
    name = env_id.split("/")[-1].removesuffix("-v0").lower()
    for kind, states in (("train", core_class.training_states(count, seed)),
                         ("heldout", core_class.heldout_states(count, seed))):
        core = core_class(num_envs=count)
        for i in range(count):
            path = out_dir / f"{name}_{kind}_{i}.png"
            plt.imsave(path, core.render(i, states))
            out.print(f"{kind} state → {path}", highlight=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"rlbasins {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Show the version and exit.")] = False) -> None:
    """rlbasins command line."""
