"""``videopanda train CONFIG.yaml [key.sub=value ...]`` (also ``python -m videopanda.train`` under torchrun).

Examples::

    videopanda train configs/train/tiny_finetune.yaml optim.max_steps=50
    torchrun --nproc_per_node 2 -m videopanda.train configs/train/tiny_finetune.yaml \\
        distributed.deepspeed=configs/deepspeed/zero2.json
    bash scripts/train/finetune.sh 0 localhost          # the paper's stage 3 on NNODES x GPUS_PER_NODE GPUs

Exit codes: 0 finished (the final model is in output_dir), 2 a bad config, 3 stopped by ``max_minutes`` (a
checkpoint is saved, no final model: relaunch the same command to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys

from videopanda.config import ConfigError, load_config
from videopanda.utils.logging import setup_logging

from .config import TrainConfig

EXIT_STOPPED = 3  # max_minutes stopped the run: a checkpoint to resume from, no final model (not a finished stage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="videopanda train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="a stage YAML (configs/train/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. stage.lr=2.0e-5 output_dir=runs/x")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
    except ConfigError as err:
        sys.stderr.write(f"videopanda train: {err}\n")
        return 2
    from .loop import train  # heavy imports (accelerate, deepspeed) only once the config is valid

    try:
        out = train(cfg)
    except ConfigError as err:  # a file the config names (model YAML, tokenizer folder...) is missing or bad
        sys.stderr.write(f"videopanda train: {err}\n")
        return 2
    if out is None:
        logging.getLogger(__name__).warning(
            "stopped by max_minutes=%s before the last step; relaunch the same command to resume (exit code %d)",
            cfg.max_minutes,
            EXIT_STOPPED,
        )
        return EXIT_STOPPED
    logging.getLogger(__name__).info("done: model saved in %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
