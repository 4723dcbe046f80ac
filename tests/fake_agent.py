"""A stand-in agent for experiment tests: a real program run as a worker's launcher,
that succeeds or fails at random with a seeded rate.

    fake_agent.py --session S --slug W --handoff FILE

Whether it fails is ``decide(FAKE_SEED, FAKE_FAIL_RATE, S, W)``: the same for the same
run and worker, different across runs. On success it writes ``ok.txt`` in its
working directory (the worktree; a ``--verify 'test -f ok.txt'`` passes) and a
handoff that names ``KODELYTH_ROUTER_TIER`` (the arm's variable); on failure it exits 3.
While ``FAKE_HOLD/all`` or ``FAKE_HOLD/<session>`` exists it waits (at most a minute;
``FAKE_HOLD/release-<session>`` lets that session's workers go), so a test can hold a
run in progress without sleeping itself. ``FAKE_LOG`` gets a
``start``/``end`` line per worker: ``<event> <monotonic time> <pid> <session> <slug>``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time


def decide(seed: str, rate: float, session: str, slug: str) -> bool:
    """True: this run's worker fails."""
    return random.Random(f"{seed}:{session}:{slug}").random() < rate


def _log(event: str, session: str, slug: str) -> None:
    path = os.environ.get("FAKE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{event} {time.monotonic():.3f} {os.getpid()} {session} {slug}\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--session", required=True)
    parser.add_argument("--slug", required=True)
    parser.add_argument("--handoff", required=True)
    args = parser.parse_args()
    _log("start", args.session, args.slug)
    hold = os.environ.get("FAKE_HOLD")
    deadline = time.monotonic() + 60
    while hold and time.monotonic() < deadline:
        if os.path.exists(os.path.join(hold, f"release-{args.session}")):
            break
        if not any(os.path.exists(os.path.join(hold, n)) for n in ("all", args.session)):
            break
        time.sleep(0.05)
    fails = decide(
        os.environ.get("FAKE_SEED", "0"),
        float(os.environ.get("FAKE_FAIL_RATE", "0")),
        args.session,
        args.slug,
    )
    _log("end", args.session, args.slug)
    if fails:
        print(f"fake agent {args.slug}: failing as decided", file=sys.stderr)
        return 3
    with open("ok.txt", "w", encoding="utf-8") as fh:
        fh.write("ok\n")
    tier = os.environ.get("KODELYTH_ROUTER_TIER", "unset")
    with open(args.handoff, "a", encoding="utf-8") as fh:
        fh.write(f"\n## Summary\nfake agent {args.slug} done (tier {tier})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
