"""``videopanda eval``: zero-shot VideoQA inference, the LLM judge, and the results table.

Three resumable stages over JSONL files, plus helpers::

    videopanda eval generate  --model CKPT --task msvd_qa --data-root DATA/eval --out runs/eval/msvd
    videopanda eval merge     --out runs/eval/msvd                     # after sharded generation
    videopanda eval judge     --predictions runs/eval/msvd/predictions.jsonl --task msvd_qa \\
                              --profile gpt-4o-mini-2024-07-18        # key from OPENAI_API_KEY
    videopanda eval aggregate runs/eval --out runs/eval/results
    videopanda eval tasks                                             # the task registry and its layouts
    videopanda eval fake-judge --port 8000                            # a loopback judge for dry runs

Also runnable as ``python -m videopanda.eval ...``. Every stage can be killed and rerun: it does only what is
missing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from pathlib import Path

from videopanda.utils.logging import setup_logging

logger = logging.getLogger(__name__)

API_KEY_ENV = "OPENAI_API_KEY"


def _add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task name (see `videopanda eval tasks`)")
    p.add_argument("--data-root", help="folder holding the datasets (e.g. DATA_ROOT/eval/GPT_Zero_Shot_QA)")
    p.add_argument("--questions", help="question file, replacing the task layout's")
    p.add_argument("--answers", help="answer file (QA sets), replacing the task layout's")
    p.add_argument("--video-dir", help="video folder, replacing the task layout's")
    p.add_argument(
        "--answers-by-position",
        action="store_true",
        help="pair an answer file that has no question ids with the questions by list position",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videopanda eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging (and tracebacks on errors)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser(
        "generate",
        parents=[common],
        help="answer a task's questions with a model -> predictions.jsonl",
        description="Greedy, batched (left-padded) generation with the training template. Appends one row per "
        "record to OUT/predictions.jsonl (or a shard file); a rerun resumes. An unreadable video is an error row.",
    )
    g.add_argument("--model", required=True, help="checkpoint folder (save_pretrained layout, tokenizer inside)")
    _add_task_args(g)
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--batch-size", type=int, default=8, help="records per generate call (default 8)")
    g.add_argument("--max-new-tokens", type=int, default=1024, help="generation budget per answer (default 1024)")
    g.add_argument("--num-shards", type=int, default=1, help="split the task into this many contiguous shards")
    g.add_argument("--shard", type=int, default=0, help="which shard this process runs (0-based)")
    g.add_argument("--limit", type=int, help="only the first N records (smoke runs)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    g.add_argument(
        "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"], help="auto: bf16 on GPU"
    )
    g.add_argument(
        "--no-prefetch", action="store_true", help="do not prepare the next batch in a thread during generation"
    )
    g.add_argument("--data-config", help="DataConfig YAML (frames, decoder); default: the model's sizes")
    g.add_argument("--data-set", nargs="*", default=[], metavar="KEY=VALUE", help="DataConfig overrides")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")

    m = sub.add_parser(
        "merge",
        parents=[common],
        help="merge shard files into predictions.jsonl (checks every record is there exactly once)",
        description="Merge OUT/predictions.shard-K-of-N.jsonl into OUT/predictions.jsonl in question order.",
    )
    m.add_argument("--out", required=True, help="the generate output folder")
    m.add_argument("--allow-missing", action="store_true", help="merge even if some records have no prediction")

    j = sub.add_parser(
        "judge",
        parents=[common],
        help="judge predictions with a pinned LLM judge (or the offline exact judge) -> judgments.jsonl",
        description="Judge every (record, dimension) not yet in judgments.jsonl. The judge is a named profile "
        "(configs/eval/judges/NAME.yaml or a path) or an explicit --judge-model; there is no default judge. The API "
        f"key is read from ${API_KEY_ENV} and never written anywhere.",
    )
    j.add_argument("--predictions", required=True, help="predictions.jsonl from generate/merge")
    j.add_argument("--task", help="task name (default: from the predictions' run.json)")
    j.add_argument("--profile", help="judge profile: a name in configs/eval/judges/ or a YAML path")
    j.add_argument("--judge-model", help="explicit model instead of a profile (a dated snapshot for OpenAI)")
    j.add_argument("--judge-revision", help="with --judge-model on a local server: the exact model revision")
    j.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    j.add_argument("--out", help="output folder (default: next to the predictions, judge-PROFILE/)")
    j.add_argument("--concurrency", type=int, help="requests in flight (default: the profile's)")
    j.add_argument("--timeout", type=float, help="seconds per request (default: the profile's)")
    j.add_argument("--max-retries", type=int, help="retries per request (default: the profile's)")
    j.add_argument("--backoff-base", type=float, help="first backoff in seconds (default: the profile's)")
    j.add_argument(
        "--prompt-template",
        action="append",
        default=[],
        metavar="[DIMENSION=]FILE",
        help="your own template file for a dimension (the task's only dimension when DIMENSION= is left out)",
    )
    j.add_argument("--no-progress", action="store_true", help="no progress bar")

    a = sub.add_parser(
        "aggregate",
        parents=[common],
        help="metrics across tasks -> results.json, results.md, results.csv",
        description="Accuracy and mean score per task and dimension, with counts of judged, unparseable, errored "
        "and missing records and the judge that produced them.",
    )
    a.add_argument("inputs", nargs="+", help="judgments.jsonl files or folders searched for them")
    a.add_argument("--out", required=True, help="folder for results.json / results.md / results.csv")

    sub.add_parser(
        "tasks", parents=[common], help="list the tasks, their layouts under --data-root and their judge dimensions"
    )

    f = sub.add_parser(
        "fake-judge",
        parents=[common],
        help="serve a loopback OpenAI-compatible judge for dry runs (no model; replies by exact match)",
        description="A chat-completions server on 127.0.0.1 for dry runs of `eval judge` (--base-url).",
    )
    f.add_argument("--port", type=int, default=8000)
    f.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    return parser


def _fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"videopanda eval: error: {message}\n")
    return code


def _progress(total: int, initial: int, disable: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=disable, desc=desc, unit="rec", dynamic_ncols=True)


# ----------------------------------------------------------------------------------------------------- generate


def _cmd_generate(args) -> int:
    import torch

    from videopanda.config import load_config
    from videopanda.data.config import DataConfig
    from videopanda.data.processor import VideoPandaProcessor
    from videopanda.data.tokenizer import load_tokenizer
    from videopanda.model import load_model
    from videopanda.model.config import VideoTokenizerConfig

    from .generate import GenerationSettings, Generator, generate_predictions
    from .records import shard_bounds
    from .tasks import get_task, load_task

    spec = get_task(args.task)
    data = load_task(spec, args.data_root, args.questions, args.answers, args.video_dir, args.answers_by_position)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = args.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    model = load_model(args.model, dtype=getattr(torch, dtype)).to(device).eval()
    tokenizer = load_tokenizer(args.model)
    stab = VideoTokenizerConfig(**model.config.video_tokenizer)
    sizes = [f"image_size={stab.image_size}", f"patch_size={stab.patch_size}"]
    trained = [f"{k}={str(v).lower()}" for k, v in DataConfig.trained_prompt(args.model).items()]  # as in training
    data_cfg = load_config(
        DataConfig, args.data_config, [*([] if args.data_config else sizes), *trained, *args.data_set]
    )
    if not data_cfg.system_prompt:  # the last of --data-config, the run folder, --data-set that sets it wins
        if any(x.startswith("system_prompt=") for x in args.data_set):
            source = "--data-set"
        elif trained:
            source = "the run folder"
        else:
            source = "--data-config"
        logger.info("prompts without the system prompt (data.system_prompt=false, set by %s)", source)
    data_cfg.check_against(stab)
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        prefetch=not args.no_prefetch,
        template=data_cfg.template,
        system_prompt=data_cfg.system_prompt,
        num_frames=data_cfg.num_frames,
        dtype=dtype,
    )
    processor = VideoPandaProcessor(tokenizer, stab, data_cfg)
    generator = Generator(model, processor, settings, device)
    n = len(data.records[: args.limit] if args.limit is not None else data.records)
    start, end = shard_bounds(n, args.num_shards, args.shard)
    bar = _progress(end - start, 0, args.no_progress, f"{spec.name} shard {args.shard}/{args.num_shards}")
    summary = generate_predictions(
        generator,
        data,
        args.out,
        model_name=str(Path(args.model).resolve()),
        num_shards=args.num_shards,
        shard=args.shard,
        limit=args.limit,
        on_row=lambda row: bar.update(1),
        on_start=bar.update,
    )
    bar.close()
    print(
        f"{spec.name} shard {args.shard}/{args.num_shards}: {summary.records} records, {summary.already_done} already "
        f"done, {summary.written} written ({summary.errors} errors) in {summary.seconds:.1f} s -> {args.out}"
    )
    return 0


def _cmd_merge(args) -> int:
    from .generate import merge_predictions

    path, counts = merge_predictions(args.out, allow_missing=args.allow_missing)
    print(
        f"merged {counts['written']} of {counts['records']} records ({counts['errors']} errors, "
        f"{counts['missing']} missing) -> {path}"
    )
    return 0


# -------------------------------------------------------------------------------------------------------- judge


def _custom_templates(values: list[str], dimensions: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        dim, sep, file = value.partition("=")
        if not sep:
            if len(dimensions) != 1:
                raise ValueError(f"--prompt-template {value}: the task has dimensions {list(dimensions)}; use DIM=FILE")
            dim, file = dimensions[0], value
        out[dim] = file
    return out


def _resolve_profile(args, spec):
    from .judge.profiles import JudgeProfile, available_profiles, load_profile

    overrides = []
    for flag, key in (("base_url", "base_url"), ("concurrency", "concurrency"), ("timeout", "timeout_s"),
                      ("max_retries", "max_retries"), ("backoff_base", "backoff_base_s")):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.profile and args.judge_model:
        raise ValueError("give --profile or --judge-model, not both")
    if args.profile:
        return load_profile(args.profile, overrides)
    if args.judge_model:
        from videopanda.config import apply_overrides, from_dict

        provider = "openai_compatible" if args.base_url else "openai"
        data = {"name": "cli-" + re.sub(r"[^\w.-]+", "_", args.judge_model), "provider": provider,
                "model": args.judge_model, "model_revision": args.judge_revision,
                "requires_api_key": provider == "openai"}  # fmt: skip
        return from_dict(JudgeProfile, apply_overrides(data, overrides), source="--judge-model")
    if spec.default_profile:
        return load_profile(spec.default_profile, overrides)
    raise ValueError(
        "no judge given: pass --profile NAME (known: " + ", ".join(available_profiles()) + ") or --judge-model. "
        "There is no default judge: results must say which judge produced them."
    )


def _cmd_judge(args) -> int:
    from videopanda.config import to_dict
    from videopanda.eval.judge.client import JudgeFatalError, OpenAIChatClient, redact_url
    from videopanda.eval.judge.prompts import templates_for
    from videopanda.eval.judge.runner import Judge, build_items, run_judge

    from .generate import MANIFEST
    from .records import read_json, read_jsonl, write_json
    from .tasks import get_task

    predictions = Path(args.predictions)
    if not predictions.is_file():
        return _fail(f"{predictions}: predictions file not found")
    manifest_path = predictions.parent / MANIFEST
    manifest = read_json(manifest_path) if manifest_path.is_file() else {}
    task_name = args.task or manifest.get("task")
    if not task_name:
        return _fail("--task is required (no run.json next to the predictions)")
    if manifest.get("task") and manifest["task"] != task_name:
        return _fail(f"{manifest_path} says task {manifest['task']!r}, but --task is {task_name!r}")
    spec = get_task(task_name)
    profile = _resolve_profile(args, spec)
    templates = templates_for(spec.dimensions, _custom_templates(args.prompt_template, spec.dimensions))
    rows = read_jsonl(predictions, allow_torn_tail=False)
    items = build_items(spec, rows, str(predictions))
    n_expected = len(rows)
    if manifest and predictions.name == "predictions.jsonl":
        n_expected = max(n_expected, int(manifest.get("num_records", 0)))
        if len(rows) < n_expected:
            logger.warning("%s: %d of %d records have predictions; judging those", predictions, len(rows), n_expected)

    safe_name = re.sub(r"[^\w.-]+", "_", profile.name)
    out_dir = Path(args.out) if args.out else predictions.parent / f"judge-{safe_name}"
    out_dir.mkdir(parents=True, exist_ok=True)

    client = None
    if not profile.is_offline:
        api_key = os.environ.get(API_KEY_ENV)
        if profile.requires_api_key and not api_key:
            return _fail(f"judge profile {profile.name} needs an API key: set {API_KEY_ENV}")
        client = OpenAIChatClient(profile, api_key)  # a keyless server gets a placeholder when none is set
    judge = Judge(spec, profile, templates, client)
    judge_info = to_dict(profile)
    judge_info["base_url"] = redact_url(profile.base_url)
    write_json(
        out_dir / "judge_run.json",
        {
            "task": spec.name,
            "predictions": str(predictions),
            "n_predictions": len(rows),
            "n_expected": n_expected,
            "dimensions": list(spec.dimensions),
            "judge": judge_info,
            "prompts": {d: {"tag": t.tag, "sha256": t.sha256, "source": t.source} for d, t in templates.items()}
            if not profile.is_offline
            else {},
        },
    )
    out_path = out_dir / "judgments.jsonl"
    logger.info("judging %s (%s) with %s [%s] -> %s", predictions, spec.name, profile.name, profile.model, out_path)
    bar = _progress(len(items), 0, args.no_progress, f"judge {spec.name}")

    async def main():
        try:
            return await run_judge(
                items, judge, out_path, profile.concurrency, on_row=lambda row: bar.update(1), on_start=bar.update
            )
        finally:
            if client is not None:
                await client.close()

    try:
        summary = asyncio.run(main())
    except JudgeFatalError as err:
        bar.close()
        return _fail(str(err))
    bar.close()
    total = summary.prompt_tokens + summary.completion_tokens
    print(
        f"{spec.name}: {summary.items} judgments, {summary.already_done} already done; this run: {summary.ok} ok, "
        f"{summary.unparseable} unparseable, {summary.prediction_errors} prediction errors, "
        f"{len(summary.failed)} failed in {summary.seconds:.1f} s ({summary.calls} calls)\n"
        f"tokens this run: prompt {summary.prompt_tokens}, completion {summary.completion_tokens}, total {total} "
        f"[judge {profile.name}: {profile.model}] -> {out_path}"
    )
    if summary.failed:
        print(f"{len(summary.failed)} requests failed (listed in {out_path.with_name('judge_failures.jsonl')}); "
              "rerun the same command to retry them")  # fmt: skip
        return 1
    return 0


# ---------------------------------------------------------------------------------------------------- aggregate


def _cmd_aggregate(args) -> int:
    from .aggregate import aggregate, markdown_table, write_results

    results = aggregate(args.inputs)
    paths = write_results(results, args.out)
    print(markdown_table(results), end="")
    print(f"-> {paths['json']}, {paths['md']}, {paths['csv']}")
    return 0


def _cmd_tasks(args) -> int:
    from .tasks import TASKS

    for spec in TASKS.values():
        print(f"{spec.name}: {spec.description}")
        print(f"    dimensions: {', '.join(spec.dimensions)}"
              + (f"; default judge: {spec.default_profile}" if spec.default_profile else ""))  # fmt: skip
        for layout in spec.layouts:
            root = f"{layout.root}/" if layout.root else ""
            files = layout.questions + (f" + {layout.answers}" if layout.answers else "")
            print(f"    DATA_ROOT/{root}: {files}, videos in {layout.video_dir}/")
        if spec.video_prefix:
            print(f"    video files: {spec.video_prefix}<video_name>{{{','.join(spec.extensions)}}}")
    return 0


def _cmd_fake_judge(args) -> int:
    from .fake_server import FakeJudgeServer

    server = FakeJudgeServer(latency_s=args.latency, port=args.port)
    print(f"fake judge on {server.base_url} (Ctrl-C to stop); try: videopanda eval judge --base-url {server.base_url} "
          "--judge-model fake --judge-revision none ...", flush=True)  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


COMMANDS = {
    "generate": _cmd_generate,
    "merge": _cmd_merge,
    "judge": _cmd_judge,
    "aggregate": _cmd_aggregate,
    "tasks": _cmd_tasks,
    "fake-judge": _cmd_fake_judge,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``videopanda eval``; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    setup_logging("DEBUG" if args.verbose else "INFO")
    from .judge.prompts import TemplateError
    from .records import RecordError

    try:
        return COMMANDS[args.command](args)
    except (RecordError, TemplateError, FileNotFoundError, KeyError, ValueError) as err:
        if args.verbose:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        return _fail(str(message))


if __name__ == "__main__":
    sys.exit(main())
