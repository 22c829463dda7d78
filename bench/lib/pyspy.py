"""Where the time goes: py-spy profiles of the app's gunicorn processes, summarized.

`bench/app_load.py --profile` records every gunicorn worker during the window with
`py-spy record --subprocesses --gil` (samples only the thread holding the GIL: the Python CPU
time; on a saturated box a preempted GIL holder still counts, so read it next to a low-load
profile) and prints, per request kind (the Django view a sample is under; `-` = gunicorn, Django
and the session lookup around the views), the *inclusive* share of each frame. Standalone:

    python -m bench.lib.pyspy /tmp/app.raw [--top 25]     # a `py-spy record --format raw` file
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

# py-spy from this venv when it is there (pyproject test extras), else from PATH.
PY_SPY = str(Path(sys.executable).with_name("py-spy")) if Path(sys.executable).with_name("py-spy").exists() else "py-spy"
# A frame as py-spy writes it: "function (path/to/file.py:line)".
FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+):(?P<line>\d+)\)$")
VIEWS = ("post_photo", "like", "home_feed", "signup", "follow", "health")


def parse(path: Path) -> list[tuple[list[str], int]]:
    """(frames root-first, sample count) per collapsed stack line."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            # --subprocesses puts a "process PID:cmdline" root frame first: not a cost.
            frames = [f for f in stack.split(";") if not f.startswith("process ")]
            stacks.append((frames, int(count)))
    return stacks


def label(frame: str) -> str:
    """`func (file:line)` shortened to `package/module.py:func`."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    parts = match["file"].split("/")
    short = "/".join(parts[-2:]) if "site-packages" not in parts else "/".join(parts[parts.index("site-packages") + 1:][-2:])
    return f"{short}:{match['func']}"


def view_of(frames: list[str]) -> str:
    """The app view a stack serves ('-' when not inside one: idle workers, gunicorn's loop)."""
    for frame in frames:
        match = FRAME.match(frame.strip())
        if match and match["file"].endswith("app/api.py") and match["func"] in VIEWS:
            return match["func"]
        if match and match["file"].endswith("app/health.py") and match["func"] == "health":
            return "health"
    return "-"


def summarize(stacks: list[tuple[list[str], int]], top: int) -> str:
    """The report: per view, its share of all samples and its top inclusive frames."""
    total = sum(count for _, count in stacks) or 1
    by_view: dict[str, Counter] = {}
    view_samples: Counter = Counter()
    for frames, count in stacks:
        view = view_of(frames)
        view_samples[view] += count
        inclusive = by_view.setdefault(view, Counter())
        for name in {label(f) for f in frames}:
            inclusive[name] += count
    out = [f"{total} samples"]
    for view, samples in view_samples.most_common():
        out.append(f"\n== {view}: {100 * samples / total:.1f}% of samples ==")
        # Frames on (nearly) every stack of the view are the server and framework around it.
        costs = [(name, count) for name, count in by_view[view].most_common() if count < 0.97 * samples]
        for name, count in costs[:top]:
            out.append(f"  {100 * count / samples:5.1f}%  {name}")
    return "\n".join(out)


def record_command(pid: int, seconds: float, out: Path, rate: int = 200) -> list[str]:
    """The py-spy command that profiles a process and its children (gunicorn: master + workers)."""
    return [PY_SPY, "record", "--subprocesses", "--gil", "--nonblocking", "-p", str(pid),
            "-d", str(max(1, int(seconds))), "-r", str(rate), "--format", "raw", "-o", str(out)]


def start_recording(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """Run py-spy in the background (needs ptrace rights: root on the one-box)."""
    return subprocess.Popen(record_command(pid, seconds, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="py-spy --format raw output")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if not args.raw.is_file():
        print(f"pyspy: no such file: {args.raw}", file=sys.stderr)
        return 2
    print(summarize(parse(args.raw), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
