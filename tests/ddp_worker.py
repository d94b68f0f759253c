"""Run under `python -m torch.distributed.run --nproc_per_node 2 --standalone tests/ddp_worker.py JOBS.json`:
joins one gloo group and trains each job ({"raw": config mapping, "resume": bool}) in turn, so one launch
serves several runs (tests/test_distributed.py)."""

import json
import sys

import torch
import torch.distributed as dist

from genfill.loadconfig import build_config
from genfill.train import train

torch.set_num_threads(1)
dist.init_process_group("gloo")
for job in json.loads(open(sys.argv[1]).read()):
    train(build_config(job["raw"]), resume=job["resume"], device="cpu", verbose=False)
dist.destroy_process_group()
