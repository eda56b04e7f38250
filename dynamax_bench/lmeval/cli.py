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


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    import dynamax_bench.lmeval.model  # noqa: F401  (registers "dynamax")

    cli_evaluate()


if __name__ == "__main__":
    main()
