"""GPU readiness, tested on any machine, and the CUDA checks for a machine that has a GPU.

On a CPU a host sync costs nothing, so a training loop full of them is fast here and stalls on
CUDA. :class:`HostSyncCounter` counts them on the CPU: the batched engine's sync-free mode (its
default on CUDA) must make none in a PPO iteration, and give the same bits as the CPU path.
The tests marked ``cuda`` run the engine on the GPU itself; they are skipped without one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlbasins.core.config import parse_config
from rlbasins.core.devices import HostSyncCounter
from rlbasins.core.store import sha256_file
from rlbasins.train import batched, train_experiment
from tests.conftest import batched_trainer, tiny_config

REWARD_MODEL = str(Path(__file__).resolve().parent.parent / "reward_models" / "zoo" / "cue_conflict.json")

CONFIGS = {
    "CartPole": tiny_config(engine="batched"),
    # short episodes (many truncations), a learned reward, value clipping and target-KL masks
    "CueConflict + reward model": tiny_config(
        engine="batched", env={"id": "rlbasins/CueConflict-v0", "num_envs": 4, "kwargs": {"size": 5, "max_steps": 6}},
        reward_model=REWARD_MODEL, ppo={"total_timesteps": 2048, "n_steps": 64, "batch_size": 64, "n_epochs": 2,
                                        "clip_range_vf": 0.2, "target_kl": 0.01}),
    "GoalOrPlace CNN": tiny_config(engine="batched", env={"id": "rlbasins/GoalOrPlace-v0", "num_envs": 4},
                                   policy={"hidden_sizes": [16], "conv_channels": [4]}),
}


SYNCING_CALLS = {
    "item": lambda x: x.sum().item(),
    "__bool__": lambda x: bool((x > 0).any()),
    "__float__": lambda x: float(x[0]),
    "__int__": lambda x: int(x[0]),
    "__index__": lambda x: [1, 2, 3][x[0].long()],
    "tolist": lambda x: x.tolist(),
    "numpy": lambda x: x.numpy(),
    "cpu": lambda x: x.cpu(),
    "nonzero": lambda x: x.nonzero(),
    "unique": lambda x: x.unique(),
    "__getitem__ with a boolean mask": lambda x: x[x > 0],
    "__setitem__ with a boolean mask": lambda x: x.clone().__setitem__(x > 0, x[:1].expand(len(x))[x > 0]),
}


@pytest.mark.parametrize("name", list(SYNCING_CALLS))
def test_host_sync_counter_sees_each_call_that_waits_for_the_device(name: str) -> None:
    with HostSyncCounter() as syncs:
        SYNCING_CALLS[name](torch.arange(-2.0, 3.0))
    assert syncs.counts[name] >= 1


def test_host_sync_counter_ignores_work_that_stays_on_the_device() -> None:
    x = torch.arange(-2.0, 3.0)
    with HostSyncCounter() as syncs:
        y = torch.where(x > 0, x * 2, x.exp()).softmax(0)
        y[x > 0] = 0.0  # a scalar fill through a mask needs no count of the mask
        x[torch.tensor([0, 2])].cumsum(0).argsort()
        x.to(torch.float64).view(5, 1).expand(5, 3).sum(1)
    assert syncs.total == 0, syncs.counts


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_sync_free_ppo_iteration_never_waits_for_the_device(tmp_path: Path, name: str) -> None:
    """Rollout, GAE, updates, NaN check and TensorBoard scalars: no host sync; the CPU path, which
    may sync, does (so the counter sees this loop)."""
    counts = {}
    for sync_free in (True, False):
        trainer = batched_trainer(CONFIGS[name], tmp_path / str(sync_free), sync_free=sync_free)
        with HostSyncCounter() as syncs:
            for _ in range(2):
                trainer.train_iteration(progress_remaining=1.0)
        trainer.close()
        counts[sync_free] = syncs.counts
    assert sum(counts[True].values()) == 0, counts[True]
    assert sum(counts[False].values()) > 0


@pytest.mark.parametrize("name", ["CueConflict + reward model", "CartPole"])
def test_sync_free_training_writes_bit_identical_checkpoints(tmp_path: Path, monkeypatch, name: str) -> None:
    """Bootstrapping every step (× 0 where nothing was truncated) and computing every env's next
    layout change no bit of the result."""
    runs = {}
    real_init = batched.BatchedTrainer.__init__
    for sync_free in (False, True):
        with monkeypatch.context() as patch:
            def init(self, cfg, tasks, mode=sync_free):
                real_init(self, cfg, tasks, sync_free=mode)
                assert self.sync_free is mode and getattr(self.env.groups[0][1].core, "sync_free", mode) is mode

            patch.setattr(batched.BatchedTrainer, "__init__", init)
            runs[sync_free] = train_experiment(parse_config(CONFIGS[name]), tmp_path / str(sync_free),
                                               show_progress=False)
    for k in range(2):
        files = sorted(runs[False].seed(k).ckpt_dir.glob("*.safetensors"))
        assert len(files) == 10  # policy and state at steps 0, 512, …, 2048
        for path in files:
            assert sha256_file(path) == sha256_file(runs[True].seed(k).ckpt_dir / path.name), path.name


# --------------------------------------------------------------------------- on a GPU

def cuda(test):
    """Marks a test ``cuda`` (``pytest -m cuda`` selects them) and skips it without a CUDA device."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(test))


@cuda
@pytest.mark.parametrize("name", list(CONFIGS))
def test_on_cuda_a_ppo_iteration_makes_no_host_sync(tmp_path: Path, name: str) -> None:
    """torch's own sync detector (``set_sync_debug_mode``) raises on any sync inside torch's ops too."""
    trainer = batched_trainer(CONFIGS[name] | {"device": "cuda"}, tmp_path)
    assert trainer.sync_free and trainer.device.type == "cuda"
    trainer.train_iteration(progress_remaining=1.0)  # warm-up: allocations, cuBLAS handles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.train_iteration(progress_remaining=1.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer.close()


@cuda
@pytest.mark.parametrize("env_id", ["rlbasins/CueConflict-v0", "rlbasins/GoalOrPlace-v0", "rlbasins/TaskOrProxy-v0"])
def test_env_cores_step_identically_on_cuda_and_cpu(env_id: str) -> None:
    import envs

    cores = {device: envs.GRID_ENVS[env_id](num_envs=512, device=device) for device in ("cpu", "cuda")}
    actions = torch.randint(0, 4, (60, 512), generator=torch.Generator().manual_seed(0))
    for core in cores.values():
        core.reset(torch.arange(512))
    for step_actions in actions:
        steps = {device: core.step(step_actions.to(device), autoreset=True) for device, core in cores.items()}
        for field in ("obs", "reward", "terminated", "truncated", "outcome"):
            assert torch.equal(getattr(steps["cpu"], field), getattr(steps["cuda"], field).cpu()), field


@cuda
def test_a_cuda_run_starts_like_the_cpu_run_and_learns(tmp_path: Path) -> None:
    """Training on CUDA starts from the same weights as on the CPU (initialisation is on the CPU)
    and learns; its checkpoints are ordinary CPU safetensors."""
    from rlbasins.analysis.behavior import analyze_behavior

    data = tiny_config(engine="batched", ppo={"total_timesteps": 20480, "n_steps": 128, "batch_size": 256,
                                              "n_epochs": 4}, checkpoints={"every": 10240})
    on_gpu = train_experiment(parse_config(data | {"device": "cuda"}), tmp_path / "cuda", show_progress=False)
    on_cpu = train_experiment(parse_config(data), tmp_path / "cpu", show_progress=False)
    for k in range(2):
        assert sha256_file(on_gpu.seed(k).policy_path(0)) == sha256_file(on_cpu.seed(k).policy_path(0))
    assert min(analyze_behavior(on_gpu, show_progress=False).train_return) > 60  # random play scores about 20
