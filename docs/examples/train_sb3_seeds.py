"""Train PPO seeds with plain Stable-Baselines3, as you would without rlbasins: one zip per checkpoint.

    python docs/examples/train_sb3_seeds.py CartPole-v1 zips/cartpole --seeds 8 --steps 100000
    python docs/examples/train_sb3_seeds.py rlbasins/TwoDoors-v0 zips/two_doors --seeds 8 --steps 204800

Each seed writes ``OUT/seed<k>/ppo_<steps>_steps.zip`` every ``--every`` steps (SB3's CheckpointCallback) and
at the end. Nothing here comes from rlbasins but the registration of its gymnasium ids (``import envs``),
needed only for ``rlbasins/*`` envs. Import the result with ``rlbasins import-sb3 OUT/seed* --env ENV_ID``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.env_util import make_vec_env

# CartPole-v1: rl-zoo's settings (with constant schedules); TwoDoors: those of rlbasins' configs/quickstart.yaml
HYPERPARAMETERS = {
    "CartPole-v1": dict(n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, learning_rate=1e-3,
                        ent_coef=0.0),
    "rlbasins/TwoDoors-v0": dict(n_steps=128, batch_size=256, n_epochs=4, gamma=0.95, gae_lambda=0.9,
                                 learning_rate=1e-3, ent_coef=0.003, policy_kwargs=dict(net_arch=[16, 16])),
}
ENV_KWARGS = {"rlbasins/TwoDoors-v0": dict(size=4, code_length=1, probe="adjacent")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env_id")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=None, help="checkpoint interval (default: a quarter of --steps)")
    args = parser.parse_args()
    if args.env_id.startswith("rlbasins/"):
        import envs  # noqa: F401  (registers the rlbasins/* gymnasium ids)
    settings = HYPERPARAMETERS.get(args.env_id, {})  # SB3's defaults for any other env
    n_envs = 8
    every = (args.every or args.steps // 4) // n_envs  # CheckpointCallback counts vec-env steps
    for seed in range(args.seeds):
        model = PPO("MlpPolicy", make_vec_env(args.env_id, n_envs=n_envs, seed=seed,
                                                env_kwargs=ENV_KWARGS.get(args.env_id)), seed=seed, verbose=0,
                    **settings)
        checkpoints = CheckpointCallback(every, str(args.out / f"seed{seed}"), name_prefix="ppo")
        model.learn(args.steps, callback=checkpoints)
        model.save(args.out / f"seed{seed}" / f"ppo_{model.num_timesteps}_steps")
        print(f"seed {seed}: {model.num_timesteps} steps → {args.out / f'seed{seed}'}", flush=True)


if __name__ == "__main__":
    main()
