"""The core every layer stands on: the config, the run store, seeding, devices, progress bars, the
policy exchange format and stacked policies, checkpoint loading, rollouts, the held-out sample,
shared statistics, TensorBoard logs, plotting primitives and the reward-model card.

It imports nothing of rlbasins but itself (and the :mod:`envs` it plays); see docs/architecture.md."""
