"""Held-out behaviour at every checkpoint, logged to TensorBoard while seeds train ("basins forming").

At each checkpoint an engine saves, :meth:`HeldoutMonitor.log` gives every seed's run:

- ``heldout/share_<label>`` for each strategy and ``"neither"``: the share of held-out states where
  the seed's greedy action moves toward that strategy's target (toward neither target, for
  ``neither``). On the shipped gridworlds the strategies' moves never coincide on a held-out start
  state, so the shares sum to 1;
- ``heldout/divergence_to_<label>`` for each strategy: the mean over held-out states of the
  total-variation distance from the seed's action distribution to the nearest distribution that only
  takes moves toward that strategy's target, i.e. 1 − the probability of those moves (for a single
  such move, the distance to that strategy's deterministic action). The strategies are the
  reference, so every seed is measured on its own, in any engine;
- ``heldout/behaviour``: an image of the first few held-out states, each with the seed's action
  distribution beside the strategies' moves.

The held-out states are those of the behaviour analysis (:func:`~rlbasins.analysis.behavior.evaluation_sample`),
drawn once per run from the master seed alone, so the last checkpoint's shares are measured on the
states ``rlbasins analyze`` uses. Monitoring is one forward pass over them per checkpoint; it draws no
random numbers, so training streams are untouched. Envs without labelled strategies (CartPole, other
gymnasium envs) have no reference behaviour and no renderer here: nothing is logged for them.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

import envs
from envs.suites import get_suite
from rlbasins.core.config import ExperimentConfig
from rlbasins.core.heldout import evaluation_sample, heldout_observations
from rlbasins.core.logs import BEHAVIOR_IMAGE_TAG, divergence_tag, share_tag, strategy_labels, write_scalars
from rlbasins.core.plotting import action_names, states_with_actions
from rlbasins.core.policy import ActorCritic
from rlbasins.core.rollouts import action_probs

IMAGE_STATES = 2
"""Held-out states drawn in each ``heldout/behaviour`` image."""


class HeldoutMonitor:
    """The held-out states of one run and what every checkpoint of its seeds is measured against."""

    def __init__(self, cfg: ExperimentConfig):
        core_class = envs.GRID_ENVS[cfg.env.id]
        states = evaluation_sample(cfg).states
        core = core_class(num_envs=len(states), **cfg.env.kwargs)
        self.labels = strategy_labels(cfg.env.id)
        self.obs = heldout_observations(cfg, get_suite(cfg.env.id), states)                 # [N, C, H, W]
        self.moves = torch.stack([core.strategy_actions(states, k) for k in range(len(self.labels))])  # [K, N, A]
        self.images = [core.render(i, states) for i in range(IMAGE_STATES)]
        self._figure: Figure | None = None
        with torch.random.fork_rng(devices=[]):  # its random initial weights are never used: keep the generator
            self.template = ActorCritic.from_config(cfg.policy, self.obs.shape[1:],
                                                    self.moves.shape[-1])

    @classmethod
    def for_config(cls, cfg: ExperimentConfig) -> HeldoutMonitor | None:
        """The monitor of ``cfg``'s run, or None when its env names no strategies."""
        return cls(cfg) if strategy_labels(cfg.env.id) else None

    def scalars(self, probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Action probabilities [S, N, A] on the held-out states → {tag: per-seed values [S]}."""
        moves = self.moves.to(probs.device)
        greedy = probs.argmax(-1)                                                            # [S, N]
        toward = moves[:, torch.arange(moves.shape[1], device=probs.device), greedy]         # [K, S, N]
        mass = (probs[None] * moves[:, None]).sum(-1)                                        # [K, S, N]
        values = {share_tag(label): toward[k].float().mean(-1) for k, label in enumerate(self.labels)}
        values[share_tag("neither")] = (~toward.any(0)).float().mean(-1)
        values.update({divergence_tag(label): 1 - mass[k].mean(-1) for k, label in enumerate(self.labels)})
        return values

    def image(self, probs: torch.Tensor) -> Figure:
        """One seed's action probabilities [N, A] → a small figure of the first held-out states with its
        action distribution beside each strategy's moves (uniform over the moves toward its target).

        The figure is laid out once per run and then only the seed's bars change (a fresh layout costs
        as much again as drawing it); the caller renders it and must not close it. TensorBoard shows
        the seed (the run) and the step beside it.
        """
        moves = self.moves[:, :IMAGE_STATES].float()                                          # [K, n, A]
        strategies = moves / moves.sum(-1, keepdim=True)
        bars = torch.cat([probs[None, :IMAGE_STATES].cpu(), strategies]).transpose(0, 1).numpy()  # [n, 1 + K, A]
        if self._figure is None:
            self._figure = states_with_actions(self.images, bars, ["this seed", *self.labels],
                                               action_names(probs.shape[-1]),
                                               "This seed vs the strategies on held-out states",
                                               size=(5.5, 2.0), dpi=64)
            return self._figure
        for row, axes in enumerate(self._figure.axes[1::2]):        # the bar charts, one per state
            for rect, height in zip(axes.containers[0], bars[row, 0], strict=True):  # the seed's bars
                rect.set_height(height)
        return self._figure

    @torch.no_grad()
    def log(self, writers: list[SummaryWriter], params: dict[str, torch.Tensor], step: int) -> None:
        """Log the held-out behaviour of S seeds at checkpoint ``step``, each to its own TensorBoard
        writer [S]: their stacked policy parameters {name: [S, ...]} (exchange-format names)."""
        obs = self.obs.to(next(iter(params.values())).device)
        probs = action_probs(self.template, params, obs)                                     # [S, N, A]
        values = {tag: v.cpu().tolist() for tag, v in self.scalars(probs).items()}
        write_scalars(writers, step, values)
        for s, writer in enumerate(writers):
            writer.add_figure(BEHAVIOR_IMAGE_TAG, self.image(probs[s]), step, close=False)
