"""Policies trained elsewhere: Stable-Baselines3 zips and plain-torch state dicts in, SB3 zips out.

``import_sb3`` turns SB3 ``PPO`` zips into a run directory that ``rlbasins analyze`` and ``rlbasins
report`` read unchanged; ``import_torch`` does the same for CleanRL-style ``nn.Sequential`` actors and
critics saved as safetensors; ``export_sb3`` writes one seed as a zip that stock ``PPO.load`` loads.

Imported files are untrusted. An SB3 zip's ``data`` is JSON whose ``:serialized:`` entries are
cloudpickled objects (the policy class, the spaces, the schedules): they are never deserialised, only
the plain JSON beside them is read. ``policy.pth`` is read with ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers; ``policy.optimizer.pth`` and
``pytorch_variables.pth`` are not read at all. The spaces come from the env named on the command
line and are checked against the readable fields of the zip's.

Each imported seed keeps, in the manifest, its source files' sha256 and steps and the plain
hyper-parameters of its zip; each checkpoint's metadata names its source file.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import envs  # noqa: F401  (registers the rlbasins/* env ids)
from rlbasins.core.checkpoints import load_policy
from rlbasins.core.config import (
    SEED_FACTORS,
    ConfigError,
    ConfigIssue,
    ExperimentConfig,
    PolicyConfig,
    PPOConfig,
    dump_config,
    load_config,
)
from rlbasins.core.policy import exchange_to_sb3, sb3_to_exchange
from rlbasins.core.store import (
    CorruptFileError,
    RunDir,
    StoreError,
    atomic_write_bytes,
    load_verified,
    run_lock,
    sha256_bytes,
)
from rlbasins.train import git_commit, software_versions, utc_now

MAX_MEMBER_BYTES = 2**30
"""The largest file read from inside a zip (a zip bomb is refused before it is inflated)."""

PPO_FIELDS = ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range",
              "clip_range_vf", "normalize_advantage", "ent_coef", "vf_coef", "max_grad_norm", "target_kl")
"""The hyper-parameters an SB3 PPO zip and :class:`~rlbasins.core.config.PPOConfig` share by name."""

ACTIVATION_CLASSES = {"Tanh": "tanh", "ReLU": "relu"}


def _issue(source: Path | str, path: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(str(source), [ConfigIssue(path=path, value=value, expected=expected)])


# --------------------------------------------------------------------------- reading an SB3 zip


@dataclass(frozen=True)
class SB3Zip:
    """What is read from one SB3 zip: its bytes' sha256, the policy's state dict and the zip's plain JSON.

    ``data`` is the parsed ``data`` file; its ``:serialized:`` strings are kept as text, never decoded."""

    path: Path
    sha256: str
    state: dict[str, torch.Tensor]
    data: dict[str, Any]

    @property
    def step(self) -> int:
        """Env steps the model had taken when it was saved (``num_timesteps``)."""
        return int(self.data.get("num_timesteps") or 0)

    def plain(self, key: str) -> Any:
        """The zip's value of ``key`` when it is plain JSON (a number, string, bool or None), else None;
        a serialised object (a schedule, say) is None here, and its ``:type:`` is in :meth:`hyperparameters`."""
        value = self.data.get(key)
        return value if isinstance(value, (int, float, str, bool)) or value is None else None

    def hyperparameters(self) -> dict[str, Any]:
        """The zip's PPO hyper-parameters as stored: plain values as they are; a serialised one as the
        readable text SB3 wrote beside it (e.g. ``ConstantSchedule(val=0.0003)``) or its type."""
        out: dict[str, Any] = {}
        for key in (*PPO_FIELDS, "n_envs", "seed", "num_timesteps"):
            if key not in self.data:
                continue
            value = self.data[key]
            if isinstance(value, dict):
                value = str(value.get("value_schedule") or value.get(":type:"))
            out[key] = value
        return out


def read_sb3_zip(path: Path | str) -> SB3Zip:
    """Read ``path`` without unpickling anything (see the module docstring).

    Raises :class:`~rlbasins.core.store.CorruptFileError` for a file that is not a readable SB3 zip, and
    :class:`~rlbasins.core.config.ConfigError` for one whose ``policy.pth`` holds more than tensors."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise _issue(path, "<file>", str(path), "an SB3 zip, or a folder of them") from None
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        members = {info.filename: info for info in archive.infolist()}
        for name in ("data", "policy.pth"):
            if name not in members:
                raise CorruptFileError(path, f"no {name!r} inside: not a Stable-Baselines3 model zip "
                                             f"(it holds {sorted(members) or 'nothing'})")
            if members[name].file_size > MAX_MEMBER_BYTES:
                raise CorruptFileError(path, f"{name!r} would inflate to {members[name].file_size:,} bytes")
        data_bytes, policy_bytes = archive.read("data"), archive.read("policy.pth")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise CorruptFileError(path, f"not a readable zip ({exc})") from None
    try:
        data = json.loads(data_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(path, f"its 'data' is not JSON ({exc})") from None
    try:
        state = torch.load(io.BytesIO(policy_bytes), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the restricted unpickler met something that is not a tensor
        raise _issue(path, "policy.pth", "<not only tensors>", "a plain state dict of tensors; this one holds "
                     f"other objects and is refused unread ({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise CorruptFileError(path, f"its 'policy.pth' is not a readable torch file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(state, dict) or \
            not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CorruptFileError(path, "its 'data' or 'policy.pth' is not the mapping SB3 writes")
    return SB3Zip(path, sha256_bytes(raw), state, data)


# --------------------------------------------------------------------------- what the zip holds


@dataclass(frozen=True)
class Architecture:
    """The part of a policy that decides its module (:class:`~rlbasins.core.policy.ActorCritic`)."""

    obs_shape: tuple[int, ...]
    n_actions: int
    hidden_sizes: list[int]
    activation: str


def _serialized_field(data: dict[str, Any], key: str, field: str) -> Any:
    entry = data.get(key)
    return entry.get(field) if isinstance(entry, dict) else None


def _policy_class_name(data: dict[str, Any]) -> str:
    """The policy's class name from the text SB3 wrote beside the pickled class (its ``__init__``'s repr)."""
    init = str(_serialized_field(data, "policy_class", "__init__") or "")
    match = re.search(r"<function (\w+)\.__init__", init)
    return match.group(1) if match else "unknown"


def sb3_architecture(model: SB3Zip, env: gym.Env) -> tuple[Architecture, dict[str, torch.Tensor]]:
    """Check that ``model`` is a PPO ``MlpPolicy`` with a discrete action space that fits ``env`` and
    return (its architecture, its weights in the exchange format); otherwise raise :class:`ConfigError` naming what
    is not supported."""
    data, source = model.data, model.path
    module = str(_serialized_field(data, "policy_class", "__module__") or "")
    name = _policy_class_name(data)
    if module.startswith("sb3_contrib") or "Maskable" in name:
        raise _issue(source, "policy_class", f"{module}.{name}", "a Stable-Baselines3 PPO policy; sb3_contrib "
                     "policies (MaskablePPO, RecurrentPPO, …) are not supported: their action masks or memory "
                     "are not part of what rlbasins evaluates")
    kwargs = data.get("policy_kwargs") or {}
    extractor = str(kwargs.get("features_extractor_class", "FlattenExtractor"))
    extractor_params = [k for k in model.state if "features_extractor." in k]
    if "FlattenExtractor" not in extractor or extractor_params or name not in ("ActorCriticPolicy", "unknown"):
        raise _issue(source, "policy_kwargs.features_extractor_class", extractor if extractor_params or
                     "FlattenExtractor" not in extractor else name, "MlpPolicy (FlattenExtractor, no features-"
                     "extractor weights); CnnPolicy's NatureCNN and custom features extractors are not supported "
                     "yet — rlbasins aligns MLP trunks and 3×3 convolutions of its own layout only")
    if "log_std" in model.state:
        raise _issue(source, "action_space", _serialized_field(data, "action_space", ":type:"),
                     "a Discrete action space (this policy has a Gaussian log_std: continuous actions)")
    depth = _depth(model.state, source)
    weights = sb3_to_exchange(model.state, n_hidden=depth)
    actor = [weights[f"actor.{2 * i}.weight"] for i in range(depth)]
    critic = [weights[f"critic.{2 * i}.weight"] for i in range(depth)]
    hidden = [w.shape[0] for w in actor]
    if hidden != [w.shape[0] for w in critic]:
        raise _issue(source, "policy_kwargs.net_arch", f"pi={hidden}, vf={[w.shape[0] for w in critic]}",
                     "the same hidden sizes for the actor and the critic (pi = vf)")
    activation_text = str(kwargs.get("activation_fn", "Tanh"))
    activation = next((ours for cls, ours in ACTIVATION_CLASSES.items() if re.search(rf"\b{cls}\b", activation_text)),
                      None)
    if activation is None:
        raise _issue(source, "policy_kwargs.activation_fn", activation_text, "torch.nn.Tanh or torch.nn.ReLU")
    zip_shape = _serialized_field(data, "observation_space", "_shape")
    zip_actions = _serialized_field(data, "action_space", "n")
    if zip_shape is not None and list(map(int, zip_shape)) != list(env.observation_space.shape):
        raise _issue(source, "observation_space", list(zip_shape),
                     f"the env's observation shape {list(env.observation_space.shape)}")
    if zip_actions is not None and int(zip_actions) != getattr(env.action_space, "n", None):
        raise _issue(source, "action_space.n", int(zip_actions), f"the env's action space {env.action_space}")
    return fitted_architecture(source, "policy.pth", env, weights, hidden, activation), weights


def fitted_architecture(source: Path, where: str, env: gym.Env, weights: dict[str, torch.Tensor], hidden: list[int],
                        activation: str) -> Architecture:
    """The architecture of exchange-format ``weights`` (``hidden`` layers) once they are checked to act in ``env``:
    a Discrete action space, the flattened observation as input, one logit per action (``where``: the file's
    part to name)."""
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise _issue(source, "--env", str(env.action_space), "an env with a Discrete action space")
    obs_shape, n_actions = tuple(int(d) for d in env.observation_space.shape), int(env.action_space.n)
    inputs, outputs = weights["actor.0.weight"].shape[1], weights[f"actor.{2 * len(hidden)}.weight"].shape[0]
    if inputs != math.prod(obs_shape) or outputs != n_actions:
        raise _issue(source, where, f"input {inputs}, {outputs} actions",
                     f"a policy for the env: input {math.prod(obs_shape)}, {n_actions} actions")
    return Architecture(obs_shape, n_actions, hidden, activation)


def _depth(state: dict[str, torch.Tensor], source: Path) -> int:
    """Hidden layers of the policy net (``mlp_extractor.policy_net.{0,2,…}.weight``)."""
    pattern = re.compile(r"mlp_extractor\.policy_net\.(\d+)\.weight")
    indices = sorted(int(m.group(1)) for k in state if (m := pattern.fullmatch(k)))
    if indices != list(range(0, 2 * len(indices), 2)):
        raise _issue(source, "policy.pth", sorted(state)[:6], "SB3's ActorCriticPolicy layout: mlp_extractor."
                     "policy_net.{0,2,…} Linear layers, action_net and value_net")
    return len(indices)


# --------------------------------------------------------------------------- writing the run directory


@dataclass(frozen=True)
class ImportedCheckpoint:
    """One source file as one checkpoint of one seed, already in the exchange format."""

    step: int
    weights: dict[str, torch.Tensor]
    source: Path
    sha256: str


@dataclass(frozen=True)
class ImportedSeed:
    checkpoints: list[ImportedCheckpoint]
    seed: int | None
    """The seed the source recorded (SB3's ``seed``), None when it has none."""
    hyperparameters: dict[str, Any]


def _source_groups(sources: list[Path], suffix: str) -> list[list[Path]]:
    """One list of files per seed: a file is a seed with one checkpoint, a folder a seed whose files (``*suffix``)
    are its checkpoints."""
    groups = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            files = sorted(source.glob(f"*{suffix}"))
            if not files:
                raise FileNotFoundError(f"{source} holds no {suffix} file (a folder stands for one seed, its "
                                        f"{suffix} files for that seed's checkpoints)")
            groups.append(files)
        elif source.exists():
            groups.append([source])
        else:
            raise FileNotFoundError(f"{source} does not exist")
    return groups


def _write_run(out: Path, cfg: ExperimentConfig, arch: Architecture, seeds: list[ImportedSeed],
               kind: str, overwrite: bool) -> RunDir:
    """A finished run directory holding ``seeds`` (no resume state: an imported run is not trained further)."""
    run = RunDir(out)
    if run.exists() and not overwrite:
        raise StoreError(f"{out} already holds a run; pass --overwrite to replace it or choose another -o")
    with run_lock(run.root):
        if run.exists():
            run.clear()
        atomic_write_bytes(run.config_path, dump_config(cfg).encode())
        manifest: dict[str, Any] = {
            "experiment": cfg.name, "status": "finished", "created": utc_now(), "updated": utc_now(),
            "config_hash": cfg.hash(), "reward_model_sha256": None, "engine": cfg.engine, "device": "cpu",
            "versions": software_versions(), "git_commit": git_commit(), "imported": {"from": kind},
            "seeds": {}}
        for k, seed in enumerate(seeds):
            store = run.seed(k)
            for ckpt in seed.checkpoints:
                meta = {"format": "rlbasins.ActorCritic/1", "env_id": cfg.env.id, "hidden_sizes": arch.hidden_sizes,
                        "activation": arch.activation, "obs_shape": list(arch.obs_shape), "conv_channels": None,
                        "step": ckpt.step, "seed_index": k, "seeds": None, "config_hash": cfg.hash(),
                        "source": {"file": ckpt.source.name, "sha256": ckpt.sha256, "format": kind}}
                store.save(ckpt.step, ckpt.weights, meta, {}, {"imported": True})
            manifest["seeds"][str(k)] = {
                "status": "finished", "last_step": seed.checkpoints[-1].step, "error": None,
                "factor_seeds": {factor: seed.seed for factor in SEED_FACTORS}, "planted": None,
                "sources": [{"file": str(c.source.resolve()), "sha256": c.sha256, "step": c.step}
                            for c in seed.checkpoints],
                "hyperparameters": seed.hyperparameters}
        run.write_manifest(manifest)
    return run


def _imported_config(name: str, base: ExperimentConfig | None, env_id: str, env_kwargs: dict[str, Any],
                     arch: Architecture, n_seeds: int, steps: list[int], ppo: dict[str, Any], num_envs: int,
                     source: str) -> ExperimentConfig:
    """The run's config: the env (and analysis settings) of ``base`` or of ``env_id``; the policy the files
    hold; the PPO settings they recorded where they fit (the rest default); checkpoints at their steps."""
    base_data = base.model_dump(mode="json") if base is not None else {}
    env = {**base_data.get("env", {}), "planted": None} if base is not None else \
        {"id": env_id, "kwargs": env_kwargs, "num_envs": num_envs}
    data = {**{k: v for k, v in base_data.items() if k in ("seed", "analysis")},
            "name": name, "device": "cpu", "env": env, "engine": "sb3",
            "policy": PolicyConfig(hidden_sizes=arch.hidden_sizes, activation=arch.activation).model_dump(mode="json"),
            "ppo": {**ppo, "total_timesteps": max(max(steps), 1)}, "seeds": {"count": n_seeds},
            "checkpoints": {"every": max(max(steps), 1), "also_at": sorted(set(steps))}}
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [ConfigIssue(path=".".join(map(str, e["loc"])), value=e.get("input"),
                                               expected=e["msg"]) for e in exc.errors()]) from None


def _ppo_settings(model: SB3Zip) -> dict[str, Any]:
    """The zip's PPO hyper-parameters that :class:`PPOConfig` accepts (each checked on its own): plain values, and
    constant schedules (``ConstantSchedule(val=0.2)``); any other schedule is left at the config's default and
    kept as text in the seed's ``hyperparameters``."""
    settings, stored = {}, model.hyperparameters()
    for key in PPO_FIELDS:
        value = model.plain(key)
        constant = re.fullmatch(r"ConstantSchedule\(val=([-+.e\d]+)\)", str(stored.get(key)))
        if value is None and constant:  # a constant schedule's value, from the text SB3 wrote beside it
            value = float(constant.group(1))
        if value is None:
            continue
        try:
            PPOConfig.model_validate({key: value})
        except ValidationError:
            continue
        settings[key] = value
    return settings


def _env_for(base: ExperimentConfig | None, env_id: str | None, env_kwargs: dict[str, Any]) -> tuple[str, gym.Env]:
    if base is not None:
        return base.env.id, gym.make(base.env.id, **base.env.kwargs)
    if env_id is None:
        raise _issue("<command line>", "--env", None, "an env id (e.g. CartPole-v1) or --config")
    try:
        return env_id, gym.make(env_id, **env_kwargs)
    except gym.error.Error as exc:
        raise _issue("<command line>", "--env", env_id, f"a registered gymnasium env id ({exc})") from None


def import_sb3(sources: list[Path], out: Path, *, env_id: str | None = None, env_kwargs: dict[str, Any] | None = None,
               config: Path | None = None, name: str | None = None, overwrite: bool = False) -> RunDir:
    """SB3 PPO zips → a finished run directory at ``out``.

    sources: one entry per seed — a zip (one checkpoint) or a folder of zips (that seed's checkpoints, each at
        its ``num_timesteps``).
    env_id, env_kwargs: the env the policies act in (its spaces are checked against the zips'); or
    config: an rlbasins experiment YAML whose env and analysis settings the run takes.
    """
    base = load_config(config) if config is not None else None
    env_id, env = _env_for(base, env_id, env_kwargs or {})
    arch, seeds, ppo, num_envs = None, [], {}, 1
    for group in _source_groups(sources, ".zip"):
        models = sorted((read_sb3_zip(p) for p in group), key=lambda m: m.step)
        checkpoints = []
        for model in models:
            here, weights = sb3_architecture(model, env)
            if arch is not None and here != arch:
                raise _issue(model.path, "policy", here, f"the architecture of the other files ({arch})")
            arch = here
            checkpoints.append(ImportedCheckpoint(model.step, weights,
                                                  model.path, model.sha256))
        steps = [c.step for c in checkpoints]
        if len(set(steps)) != len(steps):
            raise _issue(group[0].parent, "num_timesteps", steps, "one checkpoint per step within a seed's folder")
        last = models[-1]
        seeds.append(ImportedSeed(checkpoints, last.plain("seed"), last.hyperparameters()))
        ppo = ppo or _ppo_settings(last)
        num_envs = int(last.plain("n_envs") or 1)
    out = Path(out)
    cfg = _imported_config(name or out.name, base, env_id, env_kwargs or {}, arch, len(seeds),
                           [c.step for s in seeds for c in s.checkpoints], ppo, num_envs, str(sources[0]))
    return _write_run(out, cfg, arch, seeds, "sb3", overwrite)


# --------------------------------------------------------------------------- plain torch


class TorchLayout(BaseModel):
    """How a CleanRL-style agent's state dict maps onto an actor-critic (the YAML of ``import-torch``)."""

    model_config = ConfigDict(extra="forbid")
    actor: str = Field("actor", description="Key prefix of the actor's nn.Sequential (Linear layers at 0, 2, …, "
                       "the logits head last).")
    critic: str = Field("critic", description="Key prefix of the critic's nn.Sequential (the value head last).")
    activation: Literal["tanh", "relu"] = Field("tanh", description="The activation between the Linear layers.")
    total_timesteps: int | None = Field(None, gt=0, description="Env steps of a lone file's policy (a folder's "
                                        "files are named <step>.safetensors); null: the file's name when it is a "
                                        "number, else 0.")


def read_layout(path: Path) -> TorchLayout:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise _issue(path, "<file>", str(path), f"a readable YAML layout ({exc.strerror})") from None
    try:
        return TorchLayout.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), [ConfigIssue(path=".".join(map(str, e["loc"])), value=e.get("input"),
                                                  expected=e["msg"]) for e in exc.errors()]) from None


def torch_to_exchange(state: dict[str, torch.Tensor], layout: TorchLayout, source: Path) -> dict[str, torch.Tensor]:
    """A CleanRL-style state dict (``{actor}.0.weight``, …) → the exchange format, checking the chain's shapes."""
    out = {}
    for trunk, prefix in (("actor", layout.actor), ("critic", layout.critic)):
        names = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        indices = sorted({int(m.group(1)) for k in names if (m := re.fullmatch(r"(\d+)\.(weight|bias)", k))})
        if not indices or indices != list(range(0, 2 * len(indices), 2)) or len(names) != 2 * len(indices):
            raise _issue(source, f"{prefix}.*", sorted(names)[:8], f"an nn.Sequential of Linear layers at 0, 2, 4, … "
                         f"with the activation between them (keys {prefix}.0.weight, {prefix}.0.bias, …)")
        for i in indices:
            weight, bias = names[f"{i}.weight"], names[f"{i}.bias"]
            chained = i == 0 or weight.shape[1] == out[f"{trunk}.{i - 2}.weight"].shape[0]
            if weight.ndim != 2 or bias.shape != weight.shape[:1] or not chained:
                raise _issue(source, f"{prefix}.{i}.weight", list(weight.shape), "a Linear layer whose input is the "
                             "previous layer's output")
            out[f"{trunk}.{i}.weight"], out[f"{trunk}.{i}.bias"] = weight.float().clone(), bias.float().clone()
    return out


def import_torch(layout_path: Path, sources: list[Path], out: Path, *, env_id: str | None = None,
                 env_kwargs: dict[str, Any] | None = None, config: Path | None = None, name: str | None = None,
                 overwrite: bool = False) -> RunDir:
    """Safetensors state dicts of CleanRL-style agents → a finished run directory at ``out``.

    sources: one entry per seed — a ``.safetensors`` file, or a folder of ``<step>.safetensors`` files (that
    seed's checkpoints); layout_path: the YAML of :class:`TorchLayout`."""
    layout = read_layout(layout_path)
    base = load_config(config) if config is not None else None
    env_id, env = _env_for(base, env_id, env_kwargs or {})
    arch, seeds = None, []
    for group in _source_groups(sources, ".safetensors"):
        checkpoints = []
        for path in group:
            tensors, _ = load_verified(path, None)
            weights = torch_to_exchange(tensors, layout, path)
            depth = sum(1 for k in weights if k.startswith("actor.") and k.endswith(".weight")) - 1
            hidden = [weights[f"actor.{2 * i}.weight"].shape[0] for i in range(depth)]
            if hidden != [weights[f"critic.{2 * i}.weight"].shape[0] for i in range(depth)] or \
                    f"critic.{2 * depth}.weight" not in weights or weights[f"critic.{2 * depth}.weight"].shape[0] != 1:
                raise _issue(path, f"{layout.critic}.*", "", f"a critic with the actor's hidden sizes {hidden} and one "
                             "value output")
            here = fitted_architecture(path, f"{layout.actor}.*", env, weights, hidden, layout.activation)
            if arch is not None and here != arch:
                raise _issue(path, "policy", here, f"the architecture of the other files ({arch})")
            arch = here
            step = int(path.stem) if path.stem.isdigit() else (layout.total_timesteps or 0) if len(group) == 1 else None
            if step is None:
                raise _issue(path, "<file name>", path.name, "<step>.safetensors in a seed's folder")
            checkpoints.append(ImportedCheckpoint(step, weights, path, sha256_bytes(path.read_bytes())))
        checkpoints.sort(key=lambda c: c.step)
        seeds.append(ImportedSeed(checkpoints, None, {}))
    out = Path(out)
    cfg = _imported_config(name or out.name, base, env_id, env_kwargs or {}, arch, len(seeds),
                           [c.step for s in seeds for c in s.checkpoints], {}, 1, str(layout_path))
    return _write_run(out, cfg, arch, seeds, "torch", overwrite)


# --------------------------------------------------------------------------- export


def export_sb3(run: RunDir, seed: int, step: int | None, output: Path) -> Path:
    """Seed ``seed`` of ``run`` at ``step`` (None: its last checkpoint) as an SB3 PPO zip that stock
    ``PPO.load(output, env=...)`` loads, with the run's PPO hyper-parameters (``model.learn`` continues with
    them; the Adam state starts fresh)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlbasins.train.sb3 import ppo_model

    cfg = load_config(run.config_path)
    policy, step = load_policy(run, seed, step)
    if policy.conv_channels:
        raise _issue(run.config_path, "policy.conv_channels", policy.conv_channels, "an MLP policy: SB3's "
                     "CnnPolicy has no layout for rlbasins' 3×3 convolutions")
    venv = DummyVecEnv([lambda: gym.make(cfg.env.id, **cfg.env.kwargs)] * cfg.env.num_envs)
    model = ppo_model(cfg, venv, torch.device("cpu"))
    model.policy.load_state_dict(exchange_to_sb3(policy.state_dict(), len(policy.hidden_sizes)))
    model.num_timesteps = step  # a record of the checkpoint; `learn` counts from 0 unless told otherwise
    output = Path(output)
    buffer = io.BytesIO()
    model.save(buffer)
    atomic_write_bytes(output, buffer.getvalue())
    return output
