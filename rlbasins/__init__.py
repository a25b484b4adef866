"""rlbasins: generalization basins of reinforcement-learning policies.

Train many PPO seeds on one environment, evaluate them on held-out states, and find out
whether they learned different strategies (README.md; the layers: docs/architecture.md).
"""

__version__ = "0.1.0"
