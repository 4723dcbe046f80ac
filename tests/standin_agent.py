"""A stand-in coding agent for tests and benchmarks: a small program that does what a
real agent CLI does with its model, through a custom launcher, with no npm package.

It reads its task on stdin, talks the Anthropic Messages API (streaming) to
``$ANTHROPIC_BASE_URL`` with the key in ``$ANTHROPIC_API_KEY``, really runs every
``Bash`` tool call the model makes (``bash -c`` in its working directory, output
and exit status sent back as the tool result), and prints the model's final text on
stdout. It reports no usage of its own: the recording proxy's is all there is.
Standard library only; at most ``STANDIN_MAX_TURNS`` model turns (default 8).

    python3 tests/standin_agent.py < task.md >> handoff.md
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

TOOLS = [
    {
        "name": "Bash",
        "description": "Run a shell command in the working directory.",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    }
]


def _stream(base: str, key: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """One streamed turn: the content blocks and the stop reason."""
    request = urllib.request.Request(
        base + "/v1/messages",
        data=json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            "x-api-key": key,
            "anthropic-version": "2023-06-01",
        },
    )
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    stop = "end_turn"
    with urllib.request.urlopen(request, timeout=120) as response:
        for raw in response:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            kind = event.get("type")
            if kind == "content_block_start":
                blocks[event["index"]] = dict(event["content_block"])
                partial[event["index"]] = []
            elif kind == "content_block_delta":
                delta = event["delta"]
                if delta.get("type") == "text_delta":
                    block = blocks[event["index"]]
                    block["text"] = block.get("text", "") + delta["text"]
                elif delta.get("type") == "input_json_delta":
                    partial[event["index"]].append(delta["partial_json"])
            elif kind == "message_delta":
                stop = event.get("delta", {}).get("stop_reason") or stop
    for index, pieces in partial.items():
        if blocks[index].get("type") == "tool_use":
            blocks[index]["input"] = json.loads("".join(pieces) or "{}")
    return [blocks[i] for i in sorted(blocks)], stop


def main() -> int:
    base = os.environ["ANTHROPIC_BASE_URL"].rstrip("/")
    key = os.environ.get("ANTHROPIC_API_KEY", "")
    model = os.environ.get("STANDIN_MODEL", "claude-stub-1")
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": sys.stdin.read()}]}
    ]
    for _ in range(int(os.environ.get("STANDIN_MAX_TURNS", "8"))):
        body = {"model": model, "max_tokens": 1024, "stream": True, "tools": TOOLS}
        try:
            content, stop = _stream(base, key, {**body, "messages": messages})
        except OSError as exc:
            print(f"standin: the model request failed: {exc}", file=sys.stderr)
            return 1
        messages.append({"role": "assistant", "content": content})
        calls = [b for b in content if b.get("type") == "tool_use"]
        if stop != "tool_use" or not calls:
            print("".join(b.get("text", "") for b in content if b.get("type") == "text"))
            return 0
        results = []
        for call in calls:
            done = subprocess.run(
                ["bash", "-c", str(call["input"].get("command", ""))],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            output = done.stdout + done.stderr + f"\n[exit {done.returncode}]"
            # What a real CLI shows of its tool calls: on stderr, the worker's transcript.
            print(f"standin: $ {call['input'].get('command', '')}\n{output}", file=sys.stderr)
            results.append({"type": "tool_result", "tool_use_id": call["id"], "content": output})
        messages.append({"role": "user", "content": results})
    print("standin: too many turns", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
