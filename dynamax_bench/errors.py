"""How the DAG stops on bad input: one line on the screen, naming the problem and the fix.

Snakemake prints an error raised while it reads the Snakefile with the rule file, its line and a
traceback line (`WorkflowError`), and `snakemake.utils.validate` adds the whole schema (1,461 lines
for one mistyped top-level key). The Snakefile's checks call `stop` instead: the line goes to
stderr, whatever else the error knows (`detail`, e.g. jsonschema's full messages) goes to a log
file the line names, and the process exits 1 before any job runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

DETAIL_LOG = Path("logs") / "profile_check.log"  # relative to the run's working directory, as the DAG's logs


def stop(err: Exception, where: str = "", log: Path = DETAIL_LOG) -> NoReturn:
    """Print the error's one line, after `where` (the profile file) and before where its details went, and exit 1."""
    line = f"{where}: {err}" if where else str(err)
    detail = getattr(err, "detail", None)
    if detail:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{line}\n\n{detail}\n", encoding="utf-8")
        line += f" (details: {log})"
    print(line, file=sys.stderr, flush=True)
    sys.exit(1)
