"""Environments of rlbasins and their held-out state suites.

Importing this package registers the ``rlbasins/<Name>-v0`` gymnasium ids (none yet: the
two-strategy environments arrive with the environments issue) and makes every held-out suite
available through :data:`envs.suites.HELDOUT_SUITES`, keyed by gymnasium id.
"""

from envs.suites import HELDOUT_SUITES, HeldOutSuite, get_suite

__all__ = ["HELDOUT_SUITES", "HeldOutSuite", "get_suite"]
