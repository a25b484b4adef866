"""Why `rlbasins diversify` offers no behaviour-cloning loss for ridge (docs/diversity.md) →
docs/results/imitation_hessian.json.

    .venv/bin/python docs/results/imitation_hessian.py

Behaviour cloning of a policy on its training states, L(θ) = mean_s KL(π_θ0(·|s) ‖ π_θ(·|s)), is 0 with zero
gradient at θ0 and its Hessian there is the policy's Fisher information (positive semi-definite): the candidate
"flat directions" are its smallest eigenvectors, with the shift of every logit by the same amount (flat for
every input) projected out. The known truth: an [8, 8] tanh actor on 256 random states whose input 4 is never
lit, so the 8 first-layer weights on input 4 are exactly flat and change the policy where input 4 is lit. Do
Lanczos's 3 smallest eigenvectors find them?
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch.func import functional_call, grad, jvp

from rlbasins.core.policy import ActorCritic
from rlbasins.train.ridge import actor_params, flatten, unflatten

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    torch.manual_seed(0)
    template = ActorCritic(5, 3, [8, 8])
    actor = {name: value.double() for name, value in actor_params(template.state_dict()).items()}
    obs = torch.randn(256, 5, generator=torch.Generator().manual_seed(1)).double()
    obs[:, 4] = 0

    def log_policy(params):
        return torch.log_softmax(functional_call(template.actor, {n.removeprefix("actor."): p
                                                                  for n, p in params.items()}, (obs,)), -1)

    target = log_policy(actor).detach()
    x = flatten(actor)
    gradient = grad(lambda v: (target.exp() * (target - log_policy(unflatten(v, actor)))).sum(-1).mean())

    def gauge(v: torch.Tensor) -> torch.Tensor:  # remove the shift every logit shares (output layer rows' mean)
        d = unflatten(v.clone(), actor)
        for name in ("actor.4.weight", "actor.4.bias"):
            d[name] = d[name] - d[name].mean(0, keepdim=True)
        return flatten(d)

    out = {"command": "python docs/results/imitation_hessian.py",
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip(),
           "machine": f"{platform.machine()} CPU, torch {torch.__version__}", "parameters": x.numel(), "runs": []}
    for shift in (0.0, 1.0):
        products = 0

        def matvec(v, shift=shift):
            nonlocal products
            products += 1
            t = torch.as_tensor(np.asarray(v).reshape(-1))
            kept = gauge(t)
            return (gauge(jvp(gradient, (x,), (kept,))[1]) + (t - kept) + shift * t).numpy()

        started = time.perf_counter()
        row = {"shift": shift}
        try:
            values, vectors = eigsh(LinearOperator((x.numel(),) * 2, matvec=matvec, dtype=np.float64), k=3,
                                    which="SA", tol=1e-6, v0=np.random.default_rng(0).standard_normal(x.numel()))
            row["eigenvalues"] = (values - shift).tolist()
            row["norm_on_the_unseen_input"] = [float(unflatten(torch.as_tensor(vectors[:, i]), actor)
                                                     ["actor.0.weight"][:, 4].norm()) for i in range(3)]
        except ArpackNoConvergence as exc:
            row["error"] = str(exc)
        row.update(products=products, seconds=time.perf_counter() - started)
        out["runs"].append(row)
        print(row)
    (ROOT / "docs" / "results" / "imitation_hessian.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
