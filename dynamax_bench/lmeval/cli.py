"""`dynamax-lm-eval`: lm-eval's own command line with the `dynamax` model registered.

lm-eval 0.4.13 looks models up only in the registry it fills itself (no plugin entry points),
so `lm_eval --model dynamax` needs `dynamax_bench.lmeval.model` imported first; this does that and
hands every argument to lm-eval. The project's tasks on its embedded sets are in
dynamax_bench/lmeval/tasks (tag `dynamax`):

    python -m dynamax_bench.lmeval.cli --model dynamax \\
        --model_args backbone=resources/backbones/smollm2,method=full \\
        --include_path dynamax_bench/lmeval/tasks --tasks dynamax --limit 5
"""

from __future__ import annotations

import sys


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    from dynamax_bench.backbones.prepare import BackboneError
    from dynamax_bench.config import ConfigError
    from dynamax_bench.lmeval.model import ModelArgsError  # registers "dynamax"

    try:
        cli_evaluate()
    except (ModelArgsError, BackboneError, ConfigError) as err:  # the user's input: one line, not a traceback
        print(f"dynamax-lm-eval: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
