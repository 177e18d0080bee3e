"""``python -m local.demo`` (``make demo``): the whole loop against a local bridge that is already running.

``make run`` runs it once at start-up; this runs it again (a new flag version each time, so a new verdict and,
on FAIL, a new kill). Exit status 0 when the loop completed (whatever the verdicts), 1 when it could not.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from local.demo.run import DEFAULT_WORKDIR, run_demo
from local.demo.service import local_secret
from local.resources import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bridge",
        default=f"http://127.0.0.1:{os.environ.get('PORT', '3000')}",
        help="the running local bridge (default http://127.0.0.1:$PORT, PORT=3000)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("FLAGBRIDGE_CONFIG") or ROOT / "layers" / "shared" / "config" / "flagbridge.yaml"),
        help="the configuration the bridge runs with (default: $FLAGBRIDGE_CONFIG or the shipped one)",
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="manifest and report (build/demo)")
    args = parser.parse_args(argv)
    try:
        result = run_demo(args.bridge, local_secret, bridge_config=args.config, workdir=args.workdir)
    except (RuntimeError, OSError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
