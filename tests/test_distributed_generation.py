"""Two CPU processes with gloo vs one process on the generation task (issue 17, acceptance 5): same FA within
sampling noise, bit-identical weights on both ranks.

Tolerances: FA is measured on 200 samples of the forgotten class, so two independent estimates of the same rate
differ by up to 3·√(2·0.25/200) ≈ 15 points at 3 standard errors; the weights may differ (each rank draws its
own timesteps and noise for its half of every batch, and the all-reduce sums in another order) by less than 25%
relative, as in tests/test_distributed.py.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.ddp]

WORKER = str(Path(__file__).with_name("ddp_gen_worker.py"))
TOL_FA_POINTS = 15.0
TOL_REL_WEIGHTS = 0.25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out: Path, nproc: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    if nproc == 1:
        cmd = [sys.executable, WORKER, str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", WORKER, str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddpgen")
    return _run(d / "single.json", 1), _run(d / "ddp.json", 2)


@pytest.mark.parametrize("name", ["sfron", "salun"])
def test_two_processes_give_the_same_fa(runs, name):
    single, ddp = runs
    assert single["_world_size"] == 1 and ddp["_world_size"] == 2
    assert ddp[name]["identical_across_ranks"]
    assert abs(single[name]["fa"] - ddp[name]["fa"]) <= TOL_FA_POINTS, (single[name]["fa"], ddp[name]["fa"])
    a, b = torch.tensor(single[name]["weights"]), torch.tensor(ddp[name]["weights"])
    assert float((a - b).norm() / a.norm()) < TOL_REL_WEIGHTS
    assert single["original"]["fa"] == ddp["original"]["fa"]
