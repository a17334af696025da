"""Resumable checkpoints: written under a temporary name and renamed, so a crash never leaves a half checkpoint.

Layout of a run folder::

    output_dir/
      config.yaml                  the resolved TrainConfig (written at the start)
      tb/                          tensorboard logs
      checkpoint-<step>/           resumable state: accelerate's save_state (model, optimizer, scheduler, RNG of
                                   every rank) + train_state_rank<r>.json (data position) + train_state.json
      checkpoint-<step>.tmp/       a checkpoint being written (ignored by resume; replaced by the next save)
      config.json, model.safetensors, tokenizer files   the final inference model (no teacher, no head)
      distill_head.safetensors     the distillation head, for the next stage

``train_state.json`` is written last, by rank 0, once every rank has written its part: a ``checkpoint-<step>``
folder without it is incomplete and ignored.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "checkpoint-"
TMP_SUFFIX = ".tmp"


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs to continue exactly where it stopped."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch of the sampler
    consumed: int = 0  # samples of this rank's shard consumed in the current epoch
    samples: int = 0  # samples seen on this rank since the start
    tokens: int = 0  # non-padding tokens seen on this rank since the start
    skipped: int = 0  # bad records the dataset replaced on this rank (data.on_bad_sample: skip)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def find_latest(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder (temporary ones are ignored), or None."""
    found = []
    for path in Path(output_dir).glob(f"{PREFIX}*"):
        step = path.name[len(PREFIX) :]
        if path.is_dir() and step.isdigit() and (path / "train_state.json").is_file():
            found.append((int(step), path))
    return max(found)[1] if found else None


def checkpoint_path(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f"{PREFIX}{step}"


def save_checkpoint(accelerator, output_dir: str | Path, state: TrainState, keep_last: int) -> Path:
    """Save a resumable checkpoint atomically (all ranks call this; rank 0 renames and prunes).

    ``train_state.json`` holds rank 0's position; every rank's own position is in ``train_state_rank{r}.json``.
    """
    final = checkpoint_path(output_dir, state.step)
    tmp = final.with_name(final.name + TMP_SUFFIX)
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    (tmp / f"train_state_rank{accelerator.process_index}.json").write_text(state.to_json())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "train_state.json").write_text(state.to_json())  # written last: marks the checkpoint complete
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        _prune(output_dir, keep_last, final)
        logger.info("saved resumable checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def load_train_state(path: Path, rank: int) -> TrainState:
    own = path / f"train_state_rank{rank}.json"
    return TrainState(**json.loads((own if own.is_file() else path / "train_state.json").read_text()))


def _prune(output_dir: str | Path, keep_last: int, newest: Path) -> None:
    """Keep the ``keep_last`` newest checkpoints, ``newest`` (just saved) among them.

    Steps only grow within a run, so a checkpoint with a higher step than the one just saved was left by an earlier
    run (``checkpoint.resume: false``): it is stale and deleted whatever ``keep_last`` says, or a later resume would
    pick it up as the latest and continue the earlier run.
    """
    step = int(newest.name[len(PREFIX) :])
    done = sorted(
        (int(p.name[len(PREFIX) :]), p) for p in Path(output_dir).glob(f"{PREFIX}*") if p.name[len(PREFIX) :].isdigit()
    )
    stale = [path for s, path in done if s > step]
    kept = [path for s, path in done if s <= step]
    for path in stale + kept[: max(0, len(kept) - max(1, keep_last))]:
        shutil.rmtree(path, ignore_errors=True)
