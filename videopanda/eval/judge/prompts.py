"""Versioned judge prompt templates (the Video-ChatGPT protocol), as YAML files inside the package.

A template file holds ``name``, ``version``, ``reply`` (``qa``: ``{'pred': 'yes'|'no', 'score': int}``; ``score``:
``{'score': int}``), ``fields`` (the placeholders it must contain), ``system`` and ``user``. Placeholders use
``${field}`` (``string.Template``), so the literal dict braces of the reply example need no escaping. Every judgment
row records ``name@vVERSION`` and a SHA-256 of the text, so a changed prompt can never pass for the old one.

Built-in templates, one per judge dimension (files in ``videopanda/eval/judge/templates/``):

=============  ====================  ==========================================
dimension      template              fields
=============  ====================  ==========================================
qa             qa_correctness        question, answer, pred
correctness    vcg_correctness       question, answer, pred
detail         vcg_detail            question, answer, pred
context        vcg_context           question, answer, pred
temporal       vcg_temporal          question, answer, pred
consistency    vcg_consistency       question1, question2, answer, pred1, pred2
=============  ====================  ==========================================

A user template (``--prompt-template FILE`` or ``DIMENSION=FILE``) must have the same fields as the built-in one it
replaces.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

DIMENSION_TEMPLATES: dict[str, str] = {
    "qa": "qa_correctness",
    "correctness": "vcg_correctness",
    "detail": "vcg_detail",
    "context": "vcg_context",
    "temporal": "vcg_temporal",
    "consistency": "vcg_consistency",
}

ReplyKind = Literal["qa", "score"]


class TemplateError(ValueError):
    """A prompt template file is invalid; the message names the file."""


@dataclass(frozen=True)
class PromptTemplate:
    """A judge prompt: a system turn and a user turn with ``${field}`` placeholders."""

    name: str
    version: int
    reply: ReplyKind
    fields: tuple[str, ...]
    system: str
    user: str
    source: str  # the file it came from (for error messages)

    @property
    def tag(self) -> str:
        """``name@vVERSION``, recorded in every judgment row."""
        return f"{self.name}@v{self.version}"

    @property
    def sha256(self) -> str:
        """First 16 hex digits of the SHA-256 of the reply kind, fields and both turns."""
        text = "\x00".join((self.reply, ",".join(self.fields), self.system, self.user))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def render(self, values: dict[str, str]) -> list[dict[str, str]]:
        """The chat messages for one record.

        Raises:
            KeyError: a field the template needs is missing from ``values``.
        """
        missing = [f for f in self.fields if f not in values]
        if missing:
            raise KeyError(f"prompt {self.tag}: missing field(s) {', '.join(missing)}")
        args = {f: str(values[f]) for f in self.fields}
        return [
            {"role": "system", "content": string.Template(self.system).substitute(args)},
            {"role": "user", "content": string.Template(self.user).substitute(args)},
        ]


def _placeholders(text: str) -> set[str]:
    return {m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(text)} - {None}


def load_template(path: str | Path) -> PromptTemplate:
    """Read and validate a template file.

    Raises:
        TemplateError: missing keys, a bad reply kind, or placeholders that differ from ``fields``.
    """
    path = Path(path)
    if not path.is_file():
        raise TemplateError(f"{path}: prompt template not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise TemplateError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a mapping")
    need = ("name", "version", "reply", "fields", "system", "user")
    missing = [k for k in need if k not in data]
    unknown = sorted(set(data) - set(need))
    if missing or unknown:
        raise TemplateError(f"{path}: missing keys {missing}, unknown keys {unknown} (keys: {', '.join(need)})")
    if data["reply"] not in ("qa", "score"):
        raise TemplateError(f"{path}: reply must be 'qa' or 'score', got {data['reply']!r}")
    if not isinstance(data["version"], int) or isinstance(data["version"], bool):
        raise TemplateError(f"{path}: version must be an integer")
    fields = tuple(data["fields"])
    for turn in ("system", "user"):
        if not isinstance(data[turn], str) or not string.Template(data[turn]).is_valid():
            raise TemplateError(f"{path}: {turn}: not a valid template (write a literal $ as $$)")
    used = _placeholders(data["system"]) | _placeholders(data["user"])
    if used != set(fields):
        raise TemplateError(
            f"{path}: placeholders {sorted(used)} differ from fields {sorted(fields)} (write them as ${{field}})"
        )
    return PromptTemplate(
        name=str(data["name"]),
        version=data["version"],
        reply=data["reply"],
        fields=fields,
        system=str(data["system"]),
        user=str(data["user"]),
        source=str(path),
    )


def builtin_template(dimension: str) -> PromptTemplate:
    """The packaged template of a judge dimension (``qa``, ``correctness``, ..., ``consistency``)."""
    if dimension not in DIMENSION_TEMPLATES:
        raise KeyError(f"unknown judge dimension {dimension!r}; known: {', '.join(DIMENSION_TEMPLATES)}")
    return load_template(TEMPLATE_DIR / f"{DIMENSION_TEMPLATES[dimension]}.yaml")


def templates_for(
    dimensions: tuple[str, ...], custom: dict[str, str | Path] | None = None
) -> dict[str, PromptTemplate]:
    """The template of each dimension: the built-in one, or the user's file where ``custom`` names one.

    Raises:
        TemplateError: a custom template names a dimension the task does not have, or its fields or reply kind
            differ from the built-in template's.
    """
    custom = dict(custom or {})
    unknown = sorted(set(custom) - set(dimensions))
    if unknown:
        raise TemplateError(f"prompt template given for {unknown}, but this task's dimensions are {list(dimensions)}")
    out = {}
    for dim in dimensions:
        base = builtin_template(dim)
        if dim in custom:
            tpl = load_template(custom[dim])
            if set(tpl.fields) != set(base.fields) or tpl.reply != base.reply:
                raise TemplateError(
                    f"{tpl.source}: dimension {dim} needs reply {base.reply!r} and fields {list(base.fields)}, "
                    f"got reply {tpl.reply!r} and fields {list(tpl.fields)}"
                )
            out[dim] = tpl
        else:
            out[dim] = base
    return out
