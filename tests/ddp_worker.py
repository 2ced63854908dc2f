"""Run by tests/test_train_ddp.py under torchrun: train a tiny model data-parallel, then each rank
writes its final weights so the test can compare them."""

from __future__ import annotations

import os
import sys

import torch

from instructkit.train.config import TrainConfig
from instructkit.train.training import train


def main() -> None:
    config, out = sys.argv[1], sys.argv[2]
    result = train(TrainConfig.from_yaml(config), progress=False)
    rank = int(os.environ["RANK"])
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    state = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
    torch.save({"world": world, "state": state, "steps": result.metrics["steps"]}, f"{out}/rank{rank}.pt")


if __name__ == "__main__":
    main()
