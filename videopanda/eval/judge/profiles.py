"""Judge profiles: which judge produced a result, pinned and named (``configs/eval/judges/*.yaml``).

The paper's judge, OpenAI's ``gpt-3.5-turbo`` alias, moved between snapshots while it lived (snapshots are known to
move MSVD-QA accuracy by up to ten points on the same predictions) and was retired on 2026-10-23. So videopanda
never picks a judge silently: ``videopanda eval judge`` needs a profile (or an explicit ``--judge-model``), a
profile names a pinned model (a dated OpenAI snapshot, or an open model with the exact revision a local server
loaded), and every judgment row records the profile, model, revision, prompt version and temperature.

Providers:

* ``openai``: OpenAI's API. ``model`` must be a dated snapshot (``gpt-4o-mini-2024-07-18``), never an alias.
* ``openai_compatible``: any server that speaks chat completions (vLLM, SGLang, llama.cpp, TGI, ...), at
  ``base_url``. ``model_revision`` must name the exact weights (a Hugging Face commit hash).
* ``exact``: no model; normalised exact match of prediction and answer (offline, QA tasks only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from videopanda.config import load_config

Provider = Literal["openai", "openai_compatible", "exact"]

# A dated OpenAI snapshot: ...-0125, ...-1106, ...-2024-07-18.
_SNAPSHOT = re.compile(r".*-(\d{4}|\d{4}-\d{2}-\d{2})$")
EXACT_MODEL = "exact-match"


@dataclass
class JudgeProfile:
    """A judge, pinned. Loaded from ``configs/eval/judges/NAME.yaml`` with :func:`load_profile`."""

    name: str  # recorded in every judgment row; by convention the file name
    provider: Provider
    model: str = ""  # model name sent to the API: a dated snapshot or the served model's name
    model_revision: str | None = None  # exact weights of an open model (HF commit hash); required for local servers
    base_url: str | None = None  # OpenAI-compatible endpoint; None = OpenAI's own
    requires_api_key: bool = True  # OPENAI_API_KEY must be set; false: sent when set, else a placeholder
    temperature: float = 0.0  # the protocol is greedy; recorded in every row
    max_tokens: int = 64  # the reply is one short dict
    seed: int | None = None  # sent when set (best-effort determinism on servers that support it)
    timeout_s: float = 60.0  # per request; a timeout is retried
    max_retries: int = 8  # retries after the first attempt on 429, 5xx, timeouts and malformed responses
    backoff_base_s: float = 1.0  # first backoff; doubles every retry, with jitter
    backoff_max_s: float = 60.0  # cap of one backoff (a server's Retry-After is honoured even when longer)
    concurrency: int = 8  # requests in flight at once
    notes: str = ""  # provenance, caveats

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("judge profile: name is empty")
        if self.provider == "exact":
            self.model = self.model or EXACT_MODEL
            self.requires_api_key = False
        elif not self.model:
            raise ValueError(f"judge profile {self.name}: model is empty (name the pinned model)")
        if self.provider == "openai" and not _SNAPSHOT.match(self.model):
            raise ValueError(
                f"judge profile {self.name}: model {self.model!r} is a moving alias; name a dated snapshot "
                "(e.g. gpt-4o-mini-2024-07-18), because aliases change the judge, and the scores, under you"
            )
        if self.provider == "openai_compatible":
            if not self.base_url:
                raise ValueError(f"judge profile {self.name}: provider openai_compatible needs base_url")
            if not self.model_revision:
                raise ValueError(
                    f"judge profile {self.name}: model_revision is required for an open model (the exact commit "
                    "of the weights the server loaded), so results say which judge produced them"
                )
        if self.temperature < 0:
            raise ValueError(f"judge profile {self.name}: temperature must be >= 0")
        for key in ("max_tokens", "concurrency"):
            if getattr(self, key) < 1:
                raise ValueError(f"judge profile {self.name}: {key} must be >= 1")
        if self.max_retries < 0 or self.timeout_s <= 0 or self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError(f"judge profile {self.name}: retries, timeout and backoff must be non-negative")

    @property
    def is_offline(self) -> bool:
        return self.provider == "exact"


def profile_dirs() -> list[Path]:
    """Folders searched for a profile given by name: ``./configs/eval/judges``, then the repository's."""
    repo = Path(__file__).resolve().parents[3] / "configs" / "eval" / "judges"
    local = Path.cwd() / "configs" / "eval" / "judges"
    return [local] if local.resolve() == repo.resolve() else [local, repo]


def available_profiles() -> list[str]:
    """Names of the profiles found in :func:`profile_dirs`."""
    return sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def load_profile(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> JudgeProfile:
    """A profile from a YAML file path, or by name from :func:`profile_dirs`.

    Args:
        name_or_path: ``gpt-4o-mini-2024-07-18`` or ``path/to/judge.yaml``.
        overrides: ``key=value`` overrides (e.g. ``concurrency=32``).

    Raises:
        FileNotFoundError: no such profile (lists the known names).
        videopanda.config.ConfigError: the file is invalid (names the key).
    """
    path = Path(name_or_path)
    if not path.is_file():
        candidates = [d / f"{name_or_path}.yaml" for d in profile_dirs()]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise FileNotFoundError(
                f"judge profile {str(name_or_path)!r} not found (looked for a file, and in "
                f"{', '.join(str(d) for d in profile_dirs())}); known profiles: {', '.join(available_profiles())}"
            )
        path = found[0]
    return load_config(JudgeProfile, path, overrides)
