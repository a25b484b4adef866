"""Fault injection: killed trainers and Ray workers, NaN seeds, corrupt files, bad configs, two writers,
a full disk — and nothing lost.

Every test adds what it injected and verified to the session's ``fault_counts`` (kills survived,
corruptions caught, configs rejected, seeds checked / lost / duplicated); ``pytest_terminal_summary``
in conftest.py prints them at the end. Run the suite alone with ``pytest -m faults``.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from reward_models.artifact import load_reward_model
from reward_models.zoo.build import ZOO_DIR
from rlbasins.cli import app
from rlbasins.core.config import ExperimentConfig, load_config, parse_config
from rlbasins.core.reward_card import read_card
from rlbasins.core.seeding import experiment_seeds
from rlbasins.core.store import (
    CorruptFileError,
    RunDir,
    StoreWriteError,
    atomic_write_bytes,
    atomic_write_json,
    sha256_file,
)
from rlbasins.train import executors, sb3, train_experiment
from rlbasins.train.base import SeedTask
from tests.conftest import tiny_config, write_yaml

pytestmark = pytest.mark.faults
runner = CliRunner()

BATCHED = tiny_config(name="faults", engine="batched", env={"id": "CartPole-v1", "num_envs": 4},
                      ppo={"total_timesteps": 4096, "n_steps": 32, "batch_size": 64, "n_epochs": 2},
                      seeds={"count": 3}, checkpoints={"every": 128}, analysis={"enabled": False})
"""3 batched CartPole seeds, a checkpoint after every one of 32 iterations: about 2 s of training, 33
places to be killed between. (CartPole: the batched engine logs no held-out behaviour for it.)"""
BATCHED_END = 4096
SB3 = tiny_config()
"""2 SB3 CartPole seeds × 2048 steps, checkpoints every 512."""


# --------------------------------------------------------------------------- helpers


def _train(data: dict, runs: Path, **kwargs) -> RunDir:
    return train_experiment(parse_config(data), runs, show_progress=False, **kwargs)


def _hashes(run: RunDir, k: int) -> dict[str, str]:
    """sha256 of every checkpoint file (policy and resume state) of seed ``k``."""
    return {path.name: sha256_file(path) for path in sorted(run.seed(k).ckpt_dir.glob("*.safetensors"))}


def _assert_same_checkpoints(run: RunDir, reference: RunDir, seeds) -> None:
    for k in seeds:
        assert _hashes(run, k) == _hashes(reference, k), f"seed {k} differs from the uninterrupted run"


def _audit(run: RunDir, expected: dict[int, str], counts: Counter, reported: Counter | None = None) -> None:
    """Every expected seed is in the manifest once with its expected status and, when finished, its final
    checkpoint; none is extra, none lists a step twice, none was reported twice (``reported``: outcomes
    per seed as the executor gave them). Adds to the seeds checked / lost / duplicated counts."""
    seeds = run.manifest()["seeds"]
    end = load_config(run.config_path).checkpoint_steps()[-1]
    lost = {k for k, status in expected.items()
            if seeds.get(str(k), {}).get("status") != status
            or (status == "finished" and run.seed(k).last().step != end)}
    steps = {k: [e.step for e in run.seed(k).entries()] for k in expected}
    duplicated = ({int(k) for k in seeds} - set(expected)) | {k for k, s in steps.items() if len(s) != len(set(s))}
    if reported is not None:
        lost |= set(expected) - set(reported)
        duplicated |= {k for k, n in reported.items() if n != 1}
    counts["seeds checked"] += len(expected)
    counts["seeds lost"] += len(lost)
    counts["seeds duplicated"] += len(duplicated)
    assert not lost and not duplicated, f"lost {sorted(lost)}, duplicated {sorted(duplicated)}"


def _all_finished(n: int) -> dict[int, str]:
    return {k: "finished" for k in range(n)}


def _rewind(reference: RunDir, root: Path, step: int) -> RunDir:
    """A copy of ``reference`` as if killed right after its checkpoints at ``step``."""
    shutil.copytree(reference.root, root)
    run = RunDir(root)
    manifest = run.manifest()
    for k in manifest["seeds"]:
        store = run.seed(int(k))
        for entry in store.entries():
            if entry.step > step:
                for name in entry.files:
                    (store.ckpt_dir / name).unlink()
        atomic_write_json(store.index_path, [e.__dict__ for e in store.entries() if e.step <= step])
        manifest["seeds"][k].update(status="running", last_step=step)
    manifest["status"] = "running"
    run.write_manifest(manifest)
    return run


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Train with one torch thread in this process, as the forked trainers (OMP_NUM_THREADS=1) and the Ray
    workers (cpus_per_group 1) do: the batched engine's CPU floats depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def batched_reference(tmp_path_factory) -> RunDir:
    """The uninterrupted run every batched fault is compared with."""
    return _train(BATCHED, tmp_path_factory.mktemp("batched_reference"))


@pytest.fixture(scope="module")
def sb3_reference(tmp_path_factory) -> RunDir:
    return _train(SB3, tmp_path_factory.mktemp("sb3_reference"))


# --------------------------------------------------------------------------- kill -9 at random points

_FORK_SERVER = r"""
import json, os, sys
import rlbasins.cli, rlbasins.train.batched, torch.utils.tensorboard  # imported once, before any fork
print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    if "wait" in request:
        print(os.waitstatus_to_exitcode(os.waitpid(request["wait"], 0)[1]), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        os.setsid()
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        code = 0
        try:
            rlbasins.cli.app(request["argv"], prog_name="rlbasins")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
"""


class ForkServer:
    """A Python process that imports rlbasins once, then forks one ``rlbasins`` CLI process per request,
    each in its own session (process group) with its output in a log file. Each fork is a complete
    training process; forking saves the ~4 s of interpreter start and imports each one would pay."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _FORK_SERVER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert self.process.stdout.readline().strip() == "ready"

    def _ask(self, request: dict) -> int:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def start(self, argv: list[str], log: Path) -> int:
        """Start ``rlbasins ARGV``; returns its pid (= its process group)."""
        return self._ask({"argv": argv, "log": str(log)})

    def wait(self, pid: int) -> int:
        """The exit code of ``pid`` once it ends (-9: killed by SIGKILL)."""
        return self._ask({"wait": pid})

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def fork_server() -> ForkServer:
    server = ForkServer()
    yield server
    server.close()


def _wait_until(condition: Callable[[], bool], what: str, log: Path | None = None, timeout: float = 60.0) -> None:
    """Poll ``condition`` every 5 ms; on timeout fail with ``what`` and the output in ``log``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            output = log.read_text() if log is not None and log.exists() else ""
            pytest.fail(f"timed out waiting for {what}\n{output}")
        time.sleep(0.005)


def _checkpoints_of_last_seed(run: RunDir) -> int:
    """Checkpoints every seed has written (seeds save in index order, the last seed last)."""
    store = run.seed(int(BATCHED["seeds"]["count"]) - 1)
    return len(store.entries()) if store.index_path.exists() else 0


_rng = random.Random(20261125)
KILL_POINTS = [(c, round(_rng.uniform(0.0, 0.06), 3)) for c in sorted(_rng.sample(range(0, 30), 10))]
"""(checkpoints written, then seconds more) at which a training process is killed: seeded-random,
from before the first checkpoint to 4 iterations before the end, landing anywhere in an iteration
(rollout, update or checkpoint write)."""


@pytest.mark.parametrize(("checkpoints", "delay"), KILL_POINTS, ids=[f"after{c}ckpts+{int(d * 1000)}ms"
                                                                    for c, d in KILL_POINTS])
def test_kill_9_at_a_random_point_then_resume_gives_bit_identical_checkpoints(
        checkpoints: int, delay: float, batched_reference: RunDir, fork_server: ForkServer, tmp_path: Path,
        fault_counts: Counter) -> None:
    config = write_yaml(tmp_path / "faults.yaml", BATCHED)
    runs = tmp_path / "runs"
    run = RunDir(runs / "faults")
    log = tmp_path / "log"
    pid = fork_server.start(["train", str(config), "--runs-dir", str(runs), "--no-progress"], log)
    _wait_until(lambda: run.exists() and _checkpoints_of_last_seed(run) >= checkpoints,
                f"{checkpoints} checkpoints", log)
    time.sleep(delay)
    os.killpg(pid, signal.SIGKILL)
    assert fork_server.wait(pid) == -signal.SIGKILL
    manifest = run.manifest()  # intact: written atomically
    assert manifest["status"] == "running", "the run finished before it was killed; move the kill point earlier"
    for k in range(3):  # whatever the index lists is complete and intact
        for entry in run.seed(k).entries():
            run.seed(k).load_policy(entry.step)
            run.seed(k).load_state(entry.step)

    _train(BATCHED, runs, resume=True)
    _assert_same_checkpoints(run, batched_reference, range(3))
    _audit(run, _all_finished(3), fault_counts)
    fault_counts["kills survived"] += 1


def test_killed_sb3_run_resumes_to_the_same_checkpoints(sb3_reference: RunDir, tmp_path: Path,
                                                        fault_counts: Counter) -> None:
    """The sb3 engine (one process per seed): kill the real ``python -m rlbasins train`` process group."""
    config = write_yaml(tmp_path / "tiny.yaml", SB3)
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "rlbasins", "train", str(config), "--runs-dir", str(runs),
                                "--no-progress"], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunDir(runs / "tiny")
    deadline = time.time() + 120
    while not all(run.seed(k).index_path.exists() and len(run.seed(k).entries()) >= 2 for k in (0, 1)):
        assert process.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert run.manifest()["status"] == "running"
    assert any(run.seed(k).last().step < 2048 for k in (0, 1)), "killed too late to test resuming"

    refused = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs), "--no-progress"])
    assert refused.exit_code == 3 and "--resume" in refused.output
    resumed = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs), "--resume", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    _assert_same_checkpoints(run, sb3_reference, (0, 1))
    _audit(run, _all_finished(2), fault_counts)
    fault_counts["kills survived"] += 1


# --------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance with 2 CPUs for the module; the executor uses it instead of starting its own."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def _count_reported_outcomes(monkeypatch) -> Counter:
    """Outcomes per seed index as the Ray executor hands them to the driver."""
    reported: Counter = Counter()
    real_run = executors.RayExecutor.run

    def counting_run(self, cfg, tasks, on_progress, on_done):
        def count(outcome):
            reported[outcome.index] += 1
            on_done(outcome)

        real_run(self, cfg, tasks, on_progress, count)

    monkeypatch.setattr(executors.RayExecutor, "run", counting_run)
    return reported


@pytest.mark.parametrize("engine", ["batched", "sb3"])
def test_ray_executor_gives_the_checkpoints_of_the_local_one(engine: str, local_ray, batched_reference: RunDir,
                                                             sb3_reference: RunDir, tmp_path: Path,
                                                             monkeypatch, fault_counts: Counter) -> None:
    """One seed per Ray task (group_size 1), two tasks at a time: the same bytes as the local engine."""
    data, reference = (BATCHED, batched_reference) if engine == "batched" else (SB3, sb3_reference)
    reported = _count_reported_outcomes(monkeypatch)
    run = _train({**data, "executor": {"kind": "ray", "group_size": 1}}, tmp_path / "runs")
    seeds = range(data["seeds"]["count"])
    _assert_same_checkpoints(run, reference, seeds)
    _audit(run, _all_finished(len(seeds)), fault_counts, reported)


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` in the process tree (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # ended meanwhile
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _ray_workers_running(function: Callable) -> set[int]:
    """Workers of this process's local Ray instance executing ``function`` now (Ray titles them ray::<name>)."""
    title = f"ray::{function.__name__}".encode()
    workers = set()
    for pid in _descendants(os.getpid()):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title):
                workers.add(pid)
        except OSError:
            continue
    return workers


_EVENT_FILE = re.compile(r"^events\.out\.tfevents\.\d+\..+\.(\d+)\.\d+$")  # ...<time>.<host>.<pid>.<n>


def _tensorboard_writers(run: RunDir, k: int) -> set[int]:
    """PIDs of the processes that wrote seed ``k``'s TensorBoard event files."""
    return {int(match[1]) for path in (run.tb_dir / f"seed_{k}").iterdir()
            if (match := _EVENT_FILE.match(path.name))}


def _kill_group_worker(run: RunDir, after: int, result: dict) -> None:
    """Once every seed has ``after`` checkpoints, SIGKILL the Ray worker training them; record its pid and
    the identity (inode, mtime) of the checkpoint files that a resumed group must not write again."""
    try:
        _wait_until(lambda: _checkpoints_of_last_seed(run) >= after, f"{after} checkpoints")
        workers = _ray_workers_running(executors.train_group)
        assert len(workers) == 1, f"expected one Ray worker training the group, found {workers}"
        common = min(run.seed(k).last().step for k in range(3))
        result["kept"] = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for k in range(3)
                          for entry in run.seed(k).entries() if entry.step <= common
                          for path in (run.seed(k).policy_path(entry.step), run.seed(k).state_path(entry.step))}
        result["pid"] = workers.pop()
        os.kill(result["pid"], signal.SIGKILL)
    except BaseException as exc:  # handed to the test thread
        result["error"] = exc


def _train_on_ray_killing_the_worker(runs: Path, max_retries: int) -> tuple[RunDir, dict]:
    """Train BATCHED as one Ray group and SIGKILL its worker after 3 checkpoints (:func:`_kill_group_worker`)."""
    run = RunDir(runs / "faults")
    result: dict = {}
    killer = threading.Thread(target=_kill_group_worker, args=(run, 3, result))
    killer.start()
    _train({**BATCHED, "executor": {"kind": "ray", "max_retries": max_retries}}, runs)
    killer.join()
    if "error" in result:
        raise result["error"]
    _wait_until(lambda: _dead(result["pid"]), f"the killed worker {result['pid']} to be gone")
    return run, result


def _dead(pid: int) -> bool:
    """No process ``pid``, or only its zombie (killed, not yet reaped by its parent, the raylet: seen on a
    loaded machine)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_killed_ray_worker_is_retried_and_resumes_every_seed_once(local_ray, batched_reference: RunDir,
                                                                  tmp_path: Path, monkeypatch,
                                                                  fault_counts: Counter) -> None:
    reported = _count_reported_outcomes(monkeypatch)
    run, killed = _train_on_ray_killing_the_worker(tmp_path / "runs", max_retries=2)
    # retried: every seed's TensorBoard events come from the killed worker and from one other, the retry
    assert all(len(writers := _tensorboard_writers(run, k)) == 2 and killed["pid"] in writers for k in range(3))
    # resumed, not restarted: no checkpoint from before the kill was written again (same file, same mtime)
    assert len(killed["kept"]) >= 3 * 2 * 2
    assert {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in killed["kept"]} == killed["kept"]
    _assert_same_checkpoints(run, batched_reference, range(3))
    _audit(run, _all_finished(3), fault_counts, reported)
    fault_counts["kills survived"] += 1


def test_ray_group_out_of_retries_is_interrupted_and_resumes_locally(local_ray, batched_reference: RunDir,
                                                                    tmp_path: Path, fault_counts: Counter) -> None:
    """max_retries 0: the group's seeds end ``interrupted`` at their last checkpoints; ``--resume`` (here
    with the local executor: the executor is not part of the config hash) finishes them, bit for bit."""
    run, _ = _train_on_ray_killing_the_worker(tmp_path / "runs", max_retries=0)
    manifest = run.manifest()
    assert manifest["status"] == "interrupted"
    for k, seed in manifest["seeds"].items():
        assert seed["status"] == "interrupted" and "WorkerCrashedError" in seed["error"]
        assert seed["last_step"] == run.seed(int(k)).last().step < BATCHED_END
    _train(BATCHED, tmp_path / "runs", resume=True)
    _assert_same_checkpoints(run, batched_reference, range(3))
    _audit(run, _all_finished(3), fault_counts)
    fault_counts["kills survived"] += 1


# --------------------------------------------------------------------------- NaN in one seed

_FIRST_ADAM_MOMENT = re.compile(r"^adam\.m\.|\.exp_avg$")  # batched engine | sb3 (torch Adam)


def _inject_nan(run: RunDir, k: int, step: int) -> None:
    """Seed ``k``'s Adam first moment at ``step`` becomes NaN (saved with valid hashes: not corruption but a
    numerical blow-up), so its next update makes its weights NaN."""
    store = run.seed(k)
    policy, policy_meta = store.load_policy(step)
    state, state_meta = store.load_state(step)
    state = {name: torch.full_like(t, float("nan")) if _FIRST_ADAM_MOMENT.search(name) else t
             for name, t in state.items()}
    store.save(step, policy, policy_meta, state, state_meta)


@pytest.mark.parametrize(("engine", "executor"), [("batched", "local"), ("sb3", "local"), ("batched", "ray")])
def test_nan_seed_is_flagged_and_the_others_are_unchanged(engine: str, executor: str, request,
                                                          batched_reference: RunDir, sb3_reference: RunDir,
                                                          tmp_path: Path, fault_counts: Counter) -> None:
    if executor == "ray":
        request.getfixturevalue("local_ray")
    data, reference, step = (BATCHED, batched_reference, 512) if engine == "batched" else (SB3, sb3_reference, 512)
    run = _rewind(reference, tmp_path / "runs" / data["name"], step)
    _inject_nan(run, 1, step)
    _train({**data, "executor": {"kind": executor}}, tmp_path / "runs", resume=True)
    seeds = run.manifest()["seeds"]
    assert seeds["1"]["status"] == "failed" and seeds["1"]["last_step"] == step and seeds["1"]["error"]
    assert run.seed(1).last().step == step  # nothing after the blow-up was kept
    others = [k for k in range(data["seeds"]["count"]) if k != 1]
    _assert_same_checkpoints(run, reference, others)
    _audit(run, {k: "failed" if k == 1 else "finished" for k in range(data["seeds"]["count"])}, fault_counts)


# --------------------------------------------------------------------------- corrupt files

_DAMAGE_TARGETS = ("policy checkpoint", "resume state", "reward model", "manifest")


def _damage_copy(target: str, batched_reference: RunDir, folder: Path) -> tuple[Path, Callable[[], object]]:
    """A copy of one file of ``target`` kind in ``folder`` (with what loading it needs), and how to load it."""
    if target == "reward model":
        card = Path(shutil.copy(ZOO_DIR / "cue_conflict.json", folder))
        weights = Path(shutil.copy(read_card(ZOO_DIR / "cue_conflict.json")[1], folder))
        return weights, lambda: load_reward_model(card)
    run = RunDir(folder)
    store, source = run.seed(0), batched_reference.seed(0)
    store.ckpt_dir.mkdir(parents=True)
    for path in (batched_reference.manifest_path, source.index_path, source.policy_path(BATCHED_END),
                 source.state_path(BATCHED_END)):
        shutil.copy(path, folder / path.relative_to(batched_reference.root))
    return {"policy checkpoint": (store.policy_path(BATCHED_END), lambda: store.load_policy(BATCHED_END)),
            "resume state": (store.state_path(BATCHED_END), lambda: store.load_state(BATCHED_END)),
            "manifest": (run.manifest_path, run.manifest)}[target]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(_DAMAGE_TARGETS), truncate=st.booleans(), where=st.floats(0, 1, exclude_max=True),
       bit=st.integers(0, 7))
@example(target="manifest", truncate=True, where=0.9999, bit=0)  # only the final newline: same JSON content
def test_truncated_or_bit_flipped_file_is_detected_and_named(target: str, truncate: bool, where: float, bit: int,
                                                            batched_reference: RunDir, tmp_path_factory,
                                                            fault_counts: Counter) -> None:
    path, load = _damage_copy(target, batched_reference, tmp_path_factory.mktemp("damage"))
    data = bytearray(path.read_bytes())
    at = int(where * len(data))
    if truncate:
        del data[at:]
    else:
        data[at] ^= 1 << bit
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as info:
        load()
    assert info.value.path == path and str(path) in str(info.value)
    fault_counts["corruptions caught"] += 1


def test_resume_from_a_bit_flipped_checkpoint_names_it_and_exits_2(batched_reference: RunDir, tmp_path: Path,
                                                                   fault_counts: Counter) -> None:
    run = _rewind(batched_reference, tmp_path / "runs" / "faults", 1024)
    path = run.seed(2).state_path(1024)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    config = write_yaml(tmp_path / "faults.yaml", BATCHED)
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "--resume",
                                 "--no-progress"])
    assert result.exit_code == 2, result.output
    assert f"corrupt file {path}" in result.output.replace("\n", "") and "sha256" in result.output
    assert [e.step for e in run.seed(2).entries()][-1] == 1024  # nothing trained on top of it
    fault_counts["corruptions caught"] += 1


# --------------------------------------------------------------------------- malformed configs

_NAME = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=10)
_WORD = st.text(alphabet=string.ascii_letters, min_size=1, max_size=10)
_SECTIONS = ("ppo", "env", "seeds", "policy", "checkpoints", "executor", "analysis")
_POSITIVE_INTS = ("seeds.count", "env.num_envs", "ppo.n_steps", "ppo.total_timesteps", "ppo.batch_size",
                  "ppo.n_epochs", "checkpoints.every", "executor.max_workers", "executor.group_size")
_CHOICES = {"engine": ("sb3", "batched"), "device": ("auto", "cpu", "cuda"), "policy.activation": ("tanh", "relu"),
            "ppo.lr_schedule": ("constant", "linear"), "executor.kind": ("local", "ray")}
_BAD_NUMBERS = {"ppo.gamma": st.one_of(st.floats(max_value=0), st.floats(min_value=1, exclude_min=True)),
                "ppo.learning_rate": st.floats(max_value=0), "executor.cpus_per_group": st.floats(max_value=0),
                "executor.gpus_per_group": st.floats(max_value=0, exclude_max=True),
                "executor.max_retries": st.integers(max_value=-1)}
_RAY_ONLY = {"executor.address": st.just("auto"), "executor.group_size": st.integers(1, 8),
             "executor.cpus_per_group": st.integers(2, 8), "executor.gpus_per_group": st.floats(0.1, 4),
             "executor.max_retries": st.integers(0, 5).filter(lambda n: n != 3)}
"""Settings only ``executor.kind: ray`` reads, valid there but not their defaults: wrong with ``kind: local``."""


def _fields(section: str | None) -> set[str]:
    model = ExperimentConfig if section is None else ExperimentConfig.model_fields[section].annotation
    return set(model.model_fields)


def _unknown_key(section: str | None) -> st.SearchStrategy[str]:
    keys = _NAME.filter(lambda key: key not in _fields(section) and "__" not in key)  # "__": tiny_config's dot
    return keys if section is None else keys.map(lambda key: f"{section}.{key}")


def _with(path: str, values: st.SearchStrategy) -> st.SearchStrategy[tuple[str, object]]:
    return st.tuples(st.just(path), values)


_MISTAKES = st.one_of(
    st.tuples(st.sampled_from((None, *_SECTIONS)).flatmap(_unknown_key), st.integers()),
    st.sampled_from(_POSITIVE_INTS).flatmap(lambda path: _with(path, st.integers(max_value=0))),
    st.sampled_from(_POSITIVE_INTS).flatmap(lambda path: _with(path, st.one_of(_WORD, st.lists(st.integers())))),
    st.sampled_from(sorted(_CHOICES)).flatmap(
        lambda path: _with(path, _WORD.filter(lambda word: word not in _CHOICES[path]))),
    st.sampled_from(sorted(_BAD_NUMBERS)).flatmap(lambda path: _with(path, _BAD_NUMBERS[path])),
    st.sampled_from(sorted(_RAY_ONLY)).flatmap(lambda path: _with(path, _RAY_ONLY[path])),
)
"""(dotted field path, a value that is wrong there): unknown keys, out-of-range numbers, wrong types,
values outside a choice, Ray fields without ``kind: ray``."""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mistake=_MISTAKES)
def test_malformed_config_names_the_field_exits_2_and_writes_nothing(mistake: tuple[str, object], tmp_path_factory,
                                                                    fault_counts: Counter) -> None:
    path, value = mistake
    data = tiny_config(**{path.replace(".", "__"): value})
    folder = tmp_path_factory.mktemp("config")
    config = write_yaml(folder / "bad.yaml", data)
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(folder / "runs"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert any(line.startswith(f"  {path}: ") for line in result.output.splitlines()), result.output
    assert not (folder / "runs").exists()
    fault_counts["configs rejected"] += 1


@pytest.mark.parametrize(("executor", "path", "hint"), [
    ({"kind": "ray", "cpus_per_group": 10_000}, "executor.cpus_per_group", "CPUs of the local Ray instance"),
    ({"kind": "ray", "address": "auto", "max_workers": 2}, "executor.max_workers", "null with executor.address"),
    ({"kind": "ray", "gpus_per_group": 1}, "executor.gpus_per_group", "with device: cpu"),
], ids=["more CPUs than the machine", "max_workers with a cluster", "GPUs for a CPU run"])
def test_ray_executor_that_could_never_run_is_named_and_exits_2(executor: dict, path: str, hint: str,
                                                                tmp_path: Path, fault_counts: Counter) -> None:
    config = write_yaml(tmp_path / "ray.yaml", tiny_config(executor=executor))
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 2
    assert any(line.startswith(f"  {path}: ") and hint in line for line in result.output.splitlines()), result.output
    assert not (tmp_path / "runs").exists()
    fault_counts["configs rejected"] += 1


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path: Path, monkeypatch, fault_counts: Counter) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    config = write_yaml(tmp_path / "ray.yaml", tiny_config(executor={"kind": "ray"}))
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 2
    assert "  executor.kind: 'ray' — " in result.output and "pip install -e '.[ray]'" in result.output
    assert not (tmp_path / "runs").exists()
    fault_counts["configs rejected"] += 1


# --------------------------------------------------------------------------- two writers


def test_second_process_on_a_run_directory_is_refused(batched_reference: RunDir, fork_server: ForkServer,
                                                      tmp_path: Path, fault_counts: Counter) -> None:
    config = write_yaml(tmp_path / "faults.yaml", BATCHED)
    runs = tmp_path / "runs"
    argv = ["train", str(config), "--runs-dir", str(runs), "--no-progress"]
    first = fork_server.start(argv, tmp_path / "first.log")
    lock = runs / "faults" / ".lock"
    _wait_until(lambda: lock.exists() and lock.read_text() == str(first), "the first process to take the lock")
    second = fork_server.start(argv, tmp_path / "second.log")
    assert fork_server.wait(second) == 3
    assert f"in use by another rlbasins process (pid {first})" in (tmp_path / "second.log").read_text()
    assert fork_server.wait(first) == 0
    run = RunDir(runs / "faults")
    _assert_same_checkpoints(run, batched_reference, range(3))
    _audit(run, _all_finished(3), fault_counts)


# --------------------------------------------------------------------------- disk full


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "manifest.json"
    atomic_write_bytes(target, b"old")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.replace", disk_full)
    with pytest.raises(StoreWriteError, match=f"could not write {target}: No space left on device"):
        atomic_write_bytes(target, b"new and longer")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left behind


def _disk_full_when_writing(monkeypatch, fragment: str) -> None:
    """``os.fsync`` fails with ENOSPC for files whose path contains ``fragment`` (temporary names start
    with '.<final name>.')."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(batched_reference: RunDir, tmp_path: Path,
                                                              monkeypatch, fault_counts: Counter) -> None:
    """Batched engine through the CLI: the policy file of step 512 is written, its resume state is not."""
    config = write_yaml(tmp_path / "faults.yaml", BATCHED)
    runs = tmp_path / "runs"
    run = RunDir(runs / "faults")
    target = run.seed(1).state_path(512)
    _disk_full_when_writing(monkeypatch, f"seeds/1/ckpt/.{target.name}.")
    result = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs), "--no-progress"])
    assert result.exit_code == 3, result.output
    message = result.output.replace("\n", "")
    assert f"could not write {target}: No space left on device" in message and "--resume" in message
    assert run.seed(1).last().step == 384  # the previous checkpoint, intact and loadable
    assert run.seed(1).load_policy(384)[1]["step"] == 384 and run.seed(1).load_state(384)[1]["num_timesteps"] == 384
    assert not list(run.seed(1).ckpt_dir.glob(".*.tmp"))
    assert {s["status"] for s in run.manifest()["seeds"].values()} == {"running"}

    monkeypatch.undo()
    resumed = runner.invoke(app, ["train", str(config), "--runs-dir", str(runs), "--resume", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    _assert_same_checkpoints(run, batched_reference, range(3))
    _audit(run, _all_finished(3), fault_counts)


def test_disk_full_in_an_sb3_seed_interrupts_it_resumably(sb3_reference: RunDir, tmp_path: Path, monkeypatch,
                                                          fault_counts: Counter) -> None:
    cfg = parse_config(SB3)
    task = SeedTask(0, experiment_seeds(cfg.seed, 1, cfg.seeds.vary)[0], cfg.model_dump(mode="json"),
                    str(tmp_path / "run"))
    store = RunDir(tmp_path / "run").seed(0)
    _disk_full_when_writing(monkeypatch, f"/.{store.state_path(1024).name}.")
    outcome = sb3.train_seed(task)
    assert outcome.status == "interrupted" and outcome.last_step == 512
    assert f"could not write {store.state_path(1024)}: No space left on device" in outcome.error
    assert store.load_policy(512)[1]["step"] == 512 and store.load_state(512)[1]["num_timesteps"] == 512

    monkeypatch.undo()
    assert sb3.train_seed(task).status == "finished"
    assert _hashes(RunDir(tmp_path / "run"), 0) == _hashes(sb3_reference, 0)
