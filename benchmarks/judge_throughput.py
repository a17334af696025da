"""Judge throughput: records per second against the loopback judge with simulated latency, by concurrency.

Runs the real judge path (``Judge`` + ``OpenAIChatClient`` over HTTP + ``run_judge`` appending and fsyncing
``judgments.jsonl``) against :class:`videopanda.eval.fake_server.FakeJudgeServer` on 127.0.0.1, every reply
delayed by ``--latency`` seconds. The server runs in its own process, so its threads do not compete with the judge
for the GIL. The ideal rate is ``concurrency / latency``; the table shows how close the pipeline gets.

    .venv/bin/python benchmarks/judge_throughput.py [--latency 0.2] [--concurrency 1 8 32] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videopanda.eval.fake_server import FakeJudgeServer  # noqa: E402
from videopanda.eval.judge.client import OpenAIChatClient  # noqa: E402
from videopanda.eval.judge.profiles import JudgeProfile  # noqa: E402
from videopanda.eval.judge.prompts import templates_for  # noqa: E402
from videopanda.eval.judge.runner import Judge, build_items, run_judge  # noqa: E402
from videopanda.eval.tasks import get_task  # noqa: E402


def _predictions(n: int) -> list[dict]:
    return [{"id": f"q{i}", "task": "msvd_qa", "question": f"what is happening in clip {i}?", "answer": "cooking",
             "pred": "a man is cooking" if i % 2 else "cooking", "error": None} for i in range(n)]  # fmt: skip


async def _run(base_url: str, concurrency: int, n: int, out: Path) -> tuple[float, int]:
    spec = get_task("msvd_qa")
    profile = JudgeProfile(
        name="bench",
        provider="openai_compatible",
        model="fake-judge",
        model_revision="none",
        base_url=base_url,
        requires_api_key=False,
        concurrency=concurrency,
        timeout_s=30.0,
    )
    client = OpenAIChatClient(profile, None)
    try:
        judge = Judge(spec, profile, templates_for(spec.dimensions), client)
        summary = await run_judge(build_items(spec, _predictions(n), "bench"), judge, out, concurrency)
    finally:
        await client.close()
    return summary.seconds, summary.ok


def _serve(latency: float, ready) -> None:
    server = FakeJudgeServer(latency_s=latency)
    ready.put(server.base_url)
    server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to every reply (default 0.2)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=2.0, help="ideal duration of each run (sets its size)")
    args = parser.parse_args()

    rows = []
    ready = mp.Queue()
    server = mp.Process(target=_serve, args=(args.latency, ready), daemon=True)
    server.start()
    try:
        base_url = ready.get(timeout=30)
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(_run(base_url, 1, 2, Path(tmp) / "warmup.jsonl"))  # imports, connection set-up
            for c in args.concurrency:
                ideal = c / args.latency
                n = max(c, int(round(ideal * args.seconds)))
                seconds, ok = asyncio.run(_run(base_url, c, n, Path(tmp) / f"c{c}.jsonl"))
                if ok != n:
                    raise SystemExit(f"concurrency {c}: only {ok} of {n} records judged")
                rows.append((c, n, seconds, n / seconds, ideal))
    finally:
        server.terminate()
        server.join()

    print(f"judge throughput, loopback server, {args.latency * 1000:.0f} ms simulated latency per reply")
    print(f"{'concurrency':>11} {'records':>8} {'seconds':>8} {'records/s':>10} {'ideal/s':>8} {'efficiency':>10}")
    for c, n, seconds, rate, ideal in rows:
        print(f"{c:>11} {n:>8} {seconds:>8.2f} {rate:>10.1f} {ideal:>8.1f} {rate / ideal:>9.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
