"""Diversity search: do Ridge Rider's branches find basins that i.i.d. seeds reach only at a higher cost?

The study (``rlbasins diversify CONFIG``, the config's ``diversity`` section) spends one budget of env steps
per method and counts the basins each finds:

- **iid** (the baseline): ``budget // T`` ordinary seeds trained to the end T (``RUN``, a plain run of the
  config; seed k is seed k of any run of it).
- **ridge**: B base seeds (the iid run's seeds 0 … B−1) at the branch step c. For each, a fixed rollout batch
  of the training env (the batch its next PPO update would see, probe states dropped, see below) defines the
  training loss L: PPO's clipped surrogate plus entropy term over the actor's parameters
  (:func:`~rlbasins.train.ridge.surrogate_loss`). The K most negative eigenvectors of ∇²L (Lanczos on
  Hessian-vector products) give 2K branches θ ± α·eᵢ, α by line search on L; the branches train from c to T
  in lockstep (``RUN/ridge``). A branch keeps its base's env, action and minibatch streams and its optimiser
  state: two branches of one base differ only in the direction they were pushed along. B is the largest
  number of bases whose branches fit the budget; the Hessian work (products and line search, in the env
  steps of training that cost the same arithmetic) is added to the bill and shown.
- **population** (DvD): the iid run's seeds 0 … N−1 (N the largest multiple of the population size M that the
  budget pays for), trained again as populations of M with a log-determinant bonus over each population's
  action distributions on noise inputs (:mod:`rlbasins.train.population`; ``RUN/population``). Member k has
  iid seed k's initialisation and data streams: the bonus is the only difference. Its arithmetic is billed.
- **random** (the control for ridge): the same bases, the same step lengths, directions drawn uniformly
  from the sphere (``RUN/random``). If ridge beats iid and random does too, the eigenvectors did nothing
  a push of that size would not do.

**Basins.** Every final policy of every method is evaluated on the held-out probe; their pooled action
distributions are clustered as ``analyze`` clusters one run (total variation, the configured clusterer), so
a basin means the same in every method. Where the env names strategies each basin is also named by its
seeds' preferred strategy.

**Rarefaction.** A method's seeds come in units bought together: an iid seed (cost T), a base with its 2K
branches (cost c + 2K·(T − c), plus the Hessian work), a population (M·T, plus the bonus). The expected
number of basins found by n units drawn without replacement is Σ_b 1 − C(U − u_b, n) / C(U, n) (u_b: units
holding basin b), against n × the unit cost in env steps; the interval is the 2.5–97.5 percentile over
bootstrap resamples of the units.
"Beats iid" means finding, with half the budget, as many basins as iid finds with all of it.

**The probe never enters the objective.** The held-out probe is the test. The observations of the analysis's
held-out states and of a further sample of the suite are compared with the objective's batch; equal rows are
dropped before any Hessian is formed, and their count is reported (a test checks the batch is disjoint).

Everything goes to ``RUN/diversity.json`` (:class:`DiversityResult`); the report draws it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlbasins.analysis.basin_count import represented_basins
from rlbasins.core.config import DiversityConfig, ExperimentConfig, SeedGrid, load_config
from rlbasins.core.results import Result, to_json
from rlbasins.core.store import RunDir, atomic_write_json, read_json

METHODS = ("ridge", "random", "population", "iid")
"""The methods of ``rlbasins diversify``: iid is always run (the baseline)."""
RESULT_FILE = "diversity.json"
TIMINGS_FILE = "diversity_timings.json"
"""Wall-clock seconds each method's training took, kept across resumed invocations."""
PROBE_SAMPLE = 4096
"""Suite states drawn, beyond the analysis's own, to find probe states in the objective's batch."""
SUCCESS_FRACTION = 0.95
"""A seed learned the training task when its greedy training return is at least this share of the optimum."""


class DiversityError(ValueError):
    """The study cannot run as configured (e.g. a budget too small for one base's branches)."""


# --------------------------------------------------------------------------- results


@dataclass
class Branch:
    seed: int
    """Its index in the method's run."""
    base: int
    """The iid seed it branched from."""
    direction: int
    """Which eigenvector (0: the most negative eigenvalue); for random, the ridge branch it matches in length."""
    sign: int
    eigenvalue: float | None
    """The direction's Hessian eigenvalue (ridge); None for a random direction."""
    step: float
    """α: the distance moved, in parameter-norm units."""
    loss_before: float
    loss_after: float


@dataclass
class Curve:
    steps: list[int]
    """[n] env steps (with Hessian work) of n = 1 … U units."""
    found_mean: list[float]
    found_ci: list[list[float]]


@dataclass
class MethodResult:
    method: str
    run_dir: str
    """The method's run directory, relative to the study's."""
    seeds: list[int]
    units: list[list[int]]
    """The seeds bought together: [k] for an iid seed, a base's branches for ridge and random, a population."""
    unit_steps: float
    """Env steps one unit costs, the search's work included (its mean over units)."""
    env_steps: int
    """Env steps trained (the bases' steps to the branch step counted once per base)."""
    search_steps: int
    """The search's own arithmetic in the env steps of training that cost the same: ridge's rollout batches,
    Hessian-vector products and line searches; population's bonus."""
    hessian_products: int
    search_seconds: float
    """Wall-clock seconds of ridge's Hessian work (population's bonus runs inside training)."""
    train_seconds: float
    """Wall-clock seconds training the method's run took (when this invocation trained it; else as recorded)."""
    basins: list[int]
    """[seeds] each seed's pooled basin."""
    strategies: list[str] | None
    """[seeds] each seed's preferred strategy (envs that name strategies)."""
    train_return: list[float]
    trained: int
    """Seeds whose greedy training return is ≥ 95% of the optimum (all seeds when the env has no known optimum)."""
    basin_shares: list[float]
    """[basins] the share of this method's seeds in each pooled basin."""
    basin_share_ci: list[list[float]]
    """[basins] Wilson 95% interval of each share (over seeds: branches of one base are not independent)."""
    curve: Curve
    branches: list[Branch] | None = None
    pairs_split: list[int] | None = None
    """Branched methods: [pairs whose + and − branches ended in different basins, pairs] (both finished): Ridge
    Rider's claim is that the two sides of a ridge lead to different solutions; random is its control."""

    @property
    def total_steps(self) -> int:
        return self.env_steps + self.search_steps


@dataclass
class DiversityResult(Result):
    experiment: str
    budget: int
    """Env steps each method may spend."""
    total_timesteps: int
    branch_at: int
    directions: int
    basins: int
    """Pooled basins found over every method's seeds."""
    basin_sizes: list[int]
    basin_strategies: list[str] | None
    """[basins] the preferred strategy most of each basin's seeds share (envs that name strategies)."""
    rarest_basin: int
    """The basin with the smallest share among the iid seeds (ties: the smallest basin overall)."""
    population_size: int
    population_bonus: float
    methods: list[MethodResult]
    probe: dict
    """objective_samples, probe_states_dropped, probe_observations: the objective never saw a probe state."""
    optimum: float | None

    def method(self, name: str) -> MethodResult:
        return next(m for m in self.methods if m.method == name)

    def found_at(self, name: str, steps: float) -> float:
        """The expected basins method ``name`` finds within ``steps`` env steps (0 below one unit)."""
        curve = self.method(name).curve
        affordable = [mean for s, mean in zip(curve.steps, curve.found_mean, strict=True) if s <= steps]
        return affordable[-1] if affordable else 0.0

    def beats_iid(self, name: str) -> bool:
        """Whether ``name`` finds, with half the budget, at least the basins iid finds with all of it."""
        return self.found_at(name, self.budget / 2) >= self.found_at("iid", self.budget) - 1e-9


# --------------------------------------------------------------------------- rarefaction


def rarefaction_curve(units: list[list[int]], basin_of: dict[int, int], unit_steps: float, resamples: int,
                      seed: int = 0) -> Curve:
    """Expected basins found by n = 1 … U units (each a list of seeds), with a bootstrap interval over units."""
    n_basins = max(basin_of.values()) + 1
    holds = np.zeros((len(units), n_basins), bool)                         # [U, basins]
    for u, seeds in enumerate(units):
        holds[u, [basin_of[s] for s in seeds]] = True
    sizes = range(1, len(units) + 1)
    means = [represented_basins(holds.sum(0), n, units=len(units)) for n in sizes]
    rng = np.random.default_rng(seed)
    boot = np.array([[represented_basins(holds[draw].sum(0), n, units=len(units)) for n in sizes]
                     for draw in rng.integers(len(units), size=(resamples, len(units)))])
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    return Curve([round(n * unit_steps) for n in sizes], means, [[float(a), float(b)] for a, b in zip(low, high,
                                                                                                     strict=True)])


# --------------------------------------------------------------------------- the probe


def probe_observations(cfg: ExperimentConfig) -> torch.Tensor:
    """Observations [P, D] (flattened) of the held-out probe: the analysis's held-out states and
    :data:`PROBE_SAMPLE` more states of the suite (its own stream of the master seed)."""
    import gymnasium as gym

    from envs.suites import get_suite
    from rlbasins.core.heldout import evaluation_sample, heldout_observations
    from rlbasins.core.seeding import factor_seed

    suite = get_suite(cfg.env.id)
    env = gym.make(cfg.env.id, **cfg.env.kwargs)
    more = suite.sample_states(env, np.random.default_rng(factor_seed(cfg.seed, "probe", 0)), PROBE_SAMPLE)
    env.close()
    both = [heldout_observations(cfg, suite, states) for states in (evaluation_sample(cfg).states, more)]
    return torch.cat([obs.reshape(len(obs), -1).float() for obs in both])


def off_probe(obs: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    """[N] True where observation row ``obs[i]`` (flattened) equals no row of ``probe`` [P, D]."""
    flat = obs.reshape(len(obs), -1).float()
    hit = torch.zeros(len(flat), dtype=torch.bool)
    for start in range(0, len(probe), 1024):
        hit |= (flat[:, None, :] == probe[None, start:start + 1024, :]).all(-1).any(1)
    return ~hit


# --------------------------------------------------------------------------- the study


def _settings(cfg: ExperimentConfig, budget: int | None) -> DiversityConfig:
    div = cfg.diversity or DiversityConfig()
    return div if budget is None else div.model_copy(update={"budget": budget})


def _method_cfg(cfg: ExperimentConfig, name: str, bases: int, directions: int) -> ExperimentConfig:
    """The run of ``name`` (ridge or random): 2K branches of each of B bases, seed j·B + b being branch j of
    base b, on a seed grid whose data column b carries base b's env, action and minibatch streams."""
    grid = SeedGrid(init=2 * directions, data=bases)
    seeds = cfg.seeds.model_copy(update={"count": grid.init * grid.data, "grid": grid,
                                         "vary": ["init", "env", "action", "minibatch"]})
    return cfg.model_copy(update={"name": name, "seeds": seeds})


def diversify(cfg: ExperimentConfig, runs_dir: Path | str = "runs", methods: tuple[str, ...] = METHODS,
              budget: int | None = None, resume: bool = False, overwrite: bool = False,
              show_progress: bool = True) -> DiversityResult:
    """Run the study (see the module docstring) into ``runs_dir/<name>``; write and return its result."""
    from rlbasins.train import train_experiment

    unknown = set(methods) - set(METHODS)
    if unknown:
        raise DiversityError(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if cfg.engine != "batched":
        raise DiversityError("diversify trains on the batched engine; set `engine: batched`")
    if cfg.seeds.grid or cfg.seeds.init_plane or cfg.env.planted:
        raise DiversityError("diversify draws ordinary seeds (it sets the branches' seed grid itself); remove "
                             "seeds.grid, seeds.init_plane and env.planted")
    div = _settings(cfg, budget)
    end = cfg.checkpoint_steps()[-1]
    c, k = div.branch_at, div.directions
    budget = div.budget or cfg.seeds.count * end
    branched = [m for m in ("ridge", "random") if m in methods]
    bases = budget // (c + 2 * k * (end - c))
    if branched and bases < 1:
        raise DiversityError(f"a budget of {budget:,} env steps cannot pay for one base's {2 * k} branches "
                             f"({c + 2 * k * (end - c):,}); raise diversity.budget or lower diversity.directions")
    size = div.population.size
    if "population" in methods and budget // end < size:
        raise DiversityError(f"a budget of {budget:,} env steps cannot pay for one population of {size} seeds "
                             f"({size * end:,}); raise diversity.budget or lower diversity.population.size")
    iid_cfg = cfg.model_copy(update={"seeds": cfg.seeds.model_copy(update={"count": budget // end}),
                                     "population": None})

    seconds: dict[str, float] = {}

    def train(name: str, method_cfg: ExperimentConfig, root: Path, **options) -> RunDir:
        """Train one method's run, timing it unless it was finished already."""
        method_run = RunDir(root / method_cfg.name)
        finished = method_run.exists() and method_run.manifest()["status"] == "finished" and not overwrite
        started = time.perf_counter()
        trained = train_experiment(method_cfg, root, show_progress=show_progress, **options)
        if not finished:
            seconds[name] = time.perf_counter() - started
        return trained

    run = train("iid", iid_cfg, Path(runs_dir), resume=resume, overwrite=overwrite)
    timings = run.root / TIMINGS_FILE
    seconds = {**(read_json(timings) if timings.exists() else {}), **seconds}
    probe = probe_observations(iid_cfg) if branched else None      # what the Hessian's batches must not hold
    plans: dict[str, dict] = {}
    search = None
    for name in branched:
        method_cfg = _method_cfg(iid_cfg, name, bases, k)
        method_run = RunDir(run.root / name)
        if not (resume and method_run.exists()):
            search = search or _search(iid_cfg, run, bases, div, probe, show_progress)
            _start_branches(method_cfg, run, name, search, c, _branching(div))
        plans[name] = read_json(method_run.root / BRANCHES_FILE)
        made = plans[name].get("settings")
        if made is not None and made != _branching(div):
            raise DiversityError(f"{method_run.root} was branched with {made}, not {_branching(div)}: give the "
                                 f"experiment another name or runs directory, or pass --overwrite")
        train(name, method_cfg, run.root, resume=True)
    if "population" in methods:
        count = (budget // end) // size * size
        pop_cfg = iid_cfg.model_copy(update={"name": "population", "population": div.population,
                                             "seeds": iid_cfg.seeds.model_copy(update={"count": count})})
        train("population", pop_cfg, run.root, resume=resume, overwrite=overwrite)
    atomic_write_json(timings, seconds)
    result = _measure(iid_cfg, div, budget, run, [m for m in METHODS if m in methods or m == "iid"], bases, plans,
                      seconds, None if probe is None else len(probe), show_progress)
    result.save(run.root / RESULT_FILE)
    return result


BRANCHES_FILE = "branches.json"
"""In a method's run directory: its branches, the settings and the bill of the search that made them."""


def _branching(div: DiversityConfig) -> dict:
    """The settings that decide a method's branches (a resumed run must have been branched with them)."""
    return {"branch_at": div.branch_at, "directions": div.directions, "lanczos_tol": div.lanczos_tol}


@dataclass
class _Search:
    """Per base: its weights at the branch step, eigenpairs, line-searched steps and losses; the bill."""

    weights: list[dict[str, torch.Tensor]]
    actor: list[dict[str, torch.Tensor]]
    eigen: list
    steps: list[list[tuple[float, float]]]
    """[B][2K] (α, loss there) of branch j = 2i (+eᵢ) and 2i + 1 (−eᵢ)."""
    losses: list
    bill: dict


def _search(cfg: ExperimentConfig, run: RunDir, bases: int, div: DiversityConfig, probe: torch.Tensor,
            show_progress: bool) -> _Search:
    """Every base's fixed batch (probe states dropped), Hessian eigenpairs and line searches, and what it cost."""
    from rlbasins.core.checkpoints import policy_template
    from rlbasins.core.progress import task_progress
    from rlbasins.train import seed_factors
    from rlbasins.train.base import SeedTask
    from rlbasins.train.batched import BatchedTrainer
    from rlbasins.train.ridge import (
        STEP_GRID,
        LossBatch,
        actor_params,
        hessian_eigenpairs,
        line_search,
        surrogate_loss,
    )

    started = time.perf_counter()
    tasks = [SeedTask(b, seed_factors(cfg, b), cfg.model_dump(mode="json"), str(run.root)) for b in range(bases)]
    trainer = BatchedTrainer(cfg, tasks, at_step=div.branch_at, log=False)
    samples = trainer.rollout_samples()                                              # each [B, N, ...]
    trainer.close()
    search = _Search([], [], [], [], [], {})
    products = kept = dropped = arithmetic = 0
    with task_progress("Hessian eigenvectors", bases, enabled=show_progress) as advance:
        for b in range(bases):
            weights, meta = run.seed(b).load_policy(div.branch_at)
            keep = off_probe(samples["obs"][b], probe)
            kept, dropped = kept + int(keep.sum()), dropped + int((~keep).sum())
            batch = LossBatch(*(samples[name][b][keep] for name in ("obs", "actions", "old_log_probs", "advantages")))
            loss = surrogate_loss(policy_template(weights, meta), batch, cfg.ppo.clip_range, cfg.ppo.ent_coef)
            actor = {name: value.double() for name, value in actor_params(weights).items()}
            eigen = hessian_eigenpairs(loss, actor, div.directions, tol=div.lanczos_tol, seed=b)
            steps = [line_search(loss, actor, {n: sign * v for n, v in vector.items()})
                     for vector in eigen.vectors for sign in (1, -1)]
            products += eigen.products
            # a product (forward-over-reverse) costs about six forward passes; each line search step one
            arithmetic += (6 * eigen.products + len(steps) * len(STEP_GRID)) * int(keep.sum())
            for field_, value in zip(("weights", "actor", "eigen", "steps", "losses"),
                                     (weights, actor, eigen, steps, loss), strict=True):
                getattr(search, field_).append(value)
            advance()
    samples_per_base = samples["actions"].shape[1]
    # PPO spends 1 + 3·n_epochs forward passes of arithmetic per env step (the rollout's forward, and a
    # gradient, three passes, in each epoch): the Hessian work is counted as the env steps of equal arithmetic,
    # plus the rollout that collected the batches
    search.bill = {"products": products, "objective_samples": kept, "probe_states_dropped": dropped,
                   "rollout_steps": bases * samples_per_base,
                   "steps": bases * samples_per_base + math.ceil(arithmetic / (1 + 3 * cfg.ppo.n_epochs)),
                   "seconds": time.perf_counter() - started}
    return search


def _start_branches(method_cfg: ExperimentConfig, run: RunDir, name: str, search: _Search, step: int,
                    settings: dict) -> None:
    """Write the branches of ``name`` as checkpoints at ``step`` of its run and list them, with the search's
    ``settings``, in its branches file."""
    from rlbasins.core.seeding import factor_seed
    from rlbasins.train import start_from
    from rlbasins.train.ridge import moved, random_directions

    bases, k = method_cfg.seeds.grid.data, method_cfg.seeds.grid.init // 2
    starts, branches = {}, []
    for b in range(bases):
        actor, loss, eigen = search.actor[b], search.losses[b], search.eigen[b]
        others = random_directions(actor, k, factor_seed(method_cfg.seed, "diversity", b)) if name == "random" \
            else None
        with torch.no_grad():
            before = float(loss(actor))
        for j in range(2 * k):
            i, sign = j // 2, 1 - 2 * (j % 2)
            alpha = search.steps[b][j][0]
            direction = {n: sign * v for n, v in (eigen.vectors[i] if others is None else others[i]).items()}
            branched = moved(actor, direction, alpha)
            with torch.no_grad():
                after = float(loss(branched))
            seed = j * bases + b
            starts[seed] = (run, b, {**search.weights[b], **{n: v.float() for n, v in branched.items()}})
            branches.append(Branch(seed, b, i, sign, float(eigen.values[i]) if others is None else None, alpha,
                                   before, after))
    method_run = start_from(method_cfg, run.root, step, starts, overwrite=True)
    bill = search.bill if name == "ridge" else {"steps": 0, "products": 0, "seconds": 0.0}
    atomic_write_json(method_run.root / BRANCHES_FILE, {"branches": [to_json(b) for b in branches], "bill": bill,
                                                        "settings": settings})


def _measure(cfg: ExperimentConfig, div: DiversityConfig, budget: int, run: RunDir, methods: list[str], bases: int,
             plans: dict[str, dict], seconds: dict[str, float], probe_size: int | None,
             show_progress: bool) -> DiversityResult:
    """Evaluate every method's seeds on the held-out probe, cluster them together, and count."""
    from rlbasins.analysis.basins import CLUSTERERS
    from rlbasins.analysis.behavior import analyze_behavior, total_variation_matrix
    from rlbasins.core.stats import wilson_interval
    from rlbasins.studies.sweep import optimum_return
    from rlbasins.train.population import forward_passes_per_env_step as bonus_passes

    end = cfg.checkpoint_steps()[-1]
    runs = {m: run if m == "iid" else RunDir(run.root / m) for m in methods}
    behaviors = {m: analyze_behavior(r, show_progress=show_progress) for m, r in runs.items()}
    probs = torch.cat([torch.from_numpy(np.load(r.analysis_dir / "heldout_probs.npy")) for r in runs.values()])
    settings = cfg.analysis.basins
    clustering = CLUSTERERS[settings.method](total_variation_matrix(probs).numpy(), max_k=settings.max_k)
    labels = np.asarray(clustering.labels)
    n_basins = int(labels.max()) + 1
    strategies = {m: b.preferred_strategies() for m, b in behaviors.items()}
    pooled_strategies = None if strategies["iid"] is None else [s for m in methods for s in strategies[m]]
    optimum = optimum_return(cfg)
    results, offset = [], 0
    for m in methods:
        behavior = behaviors[m]
        own = labels[offset:offset + len(behavior.seeds)]
        offset += len(behavior.seeds)
        basin_of = dict(zip(behavior.seeds, own.tolist(), strict=True))
        c = div.branch_at
        if m in ("iid", "population"):
            size = 1 if m == "iid" else div.population.size
            units = [[s for s in behavior.seeds if s // size == g] for g in sorted({s // size for s in behavior.seeds})]
            branches, env_steps = None, len(runs[m].manifest()["seeds"]) * end     # failed seeds cost too
            bonus = 0 if m == "iid" else \
                env_steps * bonus_passes(load_config(runs[m].config_path)) / (1 + 3 * cfg.ppo.n_epochs)
            bill = {"steps": math.ceil(bonus), "products": 0, "seconds": 0.0}
        else:
            plan = plans[m]
            branches = [Branch(**b) for b in plan["branches"]]
            bill = plan["bill"]
            units = [[br.seed for br in branches if br.base == b and br.seed in basin_of] for b in range(bases)]
            env_steps = bases * (c + 2 * div.directions * (end - c))
        unit_steps = (env_steps + bill["steps"]) / len(units)
        pairs_split = None
        if branches is not None:
            sides = {}
            for br in branches:
                if br.seed in basin_of:
                    sides.setdefault((br.base, br.direction), []).append(basin_of[br.seed])
            both = [pair for pair in sides.values() if len(pair) == 2]
            pairs_split = [sum(a != b for a, b in both), len(both)]
        returns = behavior.train_return
        trained = sum(r >= SUCCESS_FRACTION * optimum for r in returns) if optimum else len(returns)
        results.append(MethodResult(
            method=m, run_dir="." if m == "iid" else m, seeds=behavior.seeds, units=units, unit_steps=unit_steps,
            env_steps=env_steps, search_steps=int(bill["steps"]), hessian_products=int(bill["products"]),
            search_seconds=float(bill["seconds"]), train_seconds=float(seconds.get(m, 0.0)), basins=own.tolist(),
            strategies=strategies[m], train_return=returns, trained=int(trained),
            basin_shares=[float(np.mean(own == b)) for b in range(n_basins)],
            basin_share_ci=[wilson_interval(int(np.sum(own == b)), len(own)).tolist() for b in range(n_basins)],
            curve=rarefaction_curve(units, basin_of, unit_steps, div.resamples, seed=cfg.seed), branches=branches,
            pairs_split=pairs_split))
    sizes = np.bincount(labels, minlength=n_basins)
    iid_shares = np.array(results[0].basin_shares)
    rarest = int(min(range(n_basins), key=lambda b: (iid_shares[b], sizes[b])))
    names = None
    if pooled_strategies is not None:
        names = [max(set(group), key=group.count) for b in range(n_basins)
                 for group in [[s for s, label in zip(pooled_strategies, labels, strict=True) if label == b]]]
    ridge_bill = plans.get("ridge", {}).get("bill", {})
    probe = {"probe_observations": probe_size, "objective_samples": ridge_bill.get("objective_samples"),
             "probe_states_dropped": ridge_bill.get("probe_states_dropped")}
    return DiversityResult(cfg.name, budget, end, div.branch_at, div.directions,
                           n_basins, sizes.tolist(), names, rarest, div.population.size, div.population.bonus, results,
                           probe, optimum)


def load(run: RunDir) -> DiversityResult | None:
    """``RUN/diversity.json`` of ``run`` (the iid run a study writes into), or None."""
    path = run.root / RESULT_FILE
    return DiversityResult.load(path) if path.exists() else None
