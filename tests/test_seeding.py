"""Seed factors: each factor's seed depends only on the master seed, its name and its own index."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rlbasins.core.config import SEED_FACTORS
from rlbasins.core.seeding import experiment_seeds, factor_seed, run_seeds

indices = st.fixed_dictionaries({f: st.integers(0, 10**6) for f in SEED_FACTORS})


@given(master=st.integers(0, 2**63 - 1), base=indices, factor=st.sampled_from(SEED_FACTORS),
       new_index=st.integers(0, 10**6))
def test_changing_one_factor_changes_only_that_seed(master, base, factor, new_index) -> None:
    before = run_seeds(master, base).as_dict()
    after = run_seeds(master, {**base, factor: new_index}).as_dict()
    for other in SEED_FACTORS:
        if other != factor:
            assert after[other] == before[other]
    if new_index != base[factor]:
        assert after[factor] != before[factor]


@given(master=st.integers(0, 2**32), index=st.integers(0, 1000))
def test_factors_get_distinct_streams(master, index) -> None:
    seeds = [factor_seed(master, f, index) for f in SEED_FACTORS]
    assert len(set(seeds)) == len(SEED_FACTORS)
    assert all(0 <= s < 2**32 for s in seeds)


def test_vary_subset_shares_the_other_factors() -> None:
    runs = experiment_seeds(master=3, count=5, vary=["init"])
    assert len({r.init for r in runs}) == 5
    for factor in ("env", "action", "minibatch"):
        assert len({getattr(r, factor) for r in runs}) == 1


def test_varying_only_init_keeps_the_data_stream_of_a_full_run() -> None:
    """Run k of an init-only study shares run 0's data stream seeds with a full-vary study."""
    full = experiment_seeds(master=11, count=4, vary=list(SEED_FACTORS))
    init_only = experiment_seeds(master=11, count=4, vary=["init"])
    assert [r.init for r in init_only] == [r.init for r in full]
    assert all(r.env == full[0].env and r.minibatch == full[0].minibatch for r in init_only)


def test_seed_derivation_is_pinned() -> None:
    """Golden values: a change to the derivation would silently change every stored experiment."""
    assert run_seeds(0, {f: 0 for f in SEED_FACTORS}).as_dict() == {
        "init": 234468790, "env": 2444762568, "action": 1387361855, "minibatch": 1054483067}
    assert factor_seed(12345, "env", 7) == 980844827
