"""Generation files of two versions of the engine, compared byte for byte, on real SmolLM2 weights.

The `generate` rule's decoding (`generation.decoder.decode_each`: the batched engine, then every
near-tie row re-decoded at batch 1) under the default profile's settings (batch size, prefix cache,
repetition penalty, stop strings, lengths) on the first `--limit` samples of its three tasks, for
a sweep: `full`, the profile's pruning levels, the oracle, and every exit kind under both
Transformer policies (untrained classifiers standardised on SmolLM2's exit states and, like the
training-free rules, calibrated so that about half of the decisions exit: classifiers/untrained.py).
Each version (`--before`: a checkout of the code before, e.g. a `git worktree` of main; this
checkout is `after`) runs in its own process and writes one generations file per task and method
(`generation.generate.write_generations`, the header without the agreement record, which each
version keeps apart); the files must be equal byte for byte,
and each version's agreement records say how many rows met a near tie, were re-decoded, and
differed from batch 1 before they took their batch-1 output.

    python benchmarks/generation_ab.py --before /tmp/enginebase --out benchmarks/results/generation_ab.json
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
KINDS = ("calm", "ffn", "mamba", "maxsoftmax", "saturation")


def worker(limit: int, out: Path) -> None:
    """This process's version of the package decodes the sweep and writes the files under `out`."""
    import torch

    from bench_backbones import backbone as load
    from dynamax_bench.classifiers.untrained import untrained_rule
    from dynamax_bench.config import REPO_ROOT, exit_positions
    from dynamax_bench.engine import EarlyExitGenerator, Strategy
    from dynamax_bench.files import write_json
    from dynamax_bench.generation.decoder import Decoder, decode_each
    from dynamax_bench.generation.generate import HEADER_KEY, trace_record, write_generations
    from dynamax_bench.generation.tasks import load_samples
    from dynamax_bench.profile_checks import load_profile
    from dynamax_bench.spec import decode_spec, task_spec

    config = load_profile(REPO_ROOT / "config" / "default.yaml")
    config["limit"] = limit
    torch.set_num_threads(config["runtime"]["threads"])
    bb = load("smollm2")
    exits = exit_positions({}, bb.num_layers)
    entry = config["backbones"]["smollm2"]
    calibration = EarlyExitGenerator(bb.model, bb.tokenizer, exit_layers=exits, max_new_tokens=16, eos_token_ids=[])
    agreements: dict = {}
    for task_name in config["tasks"]:
        spec_of_task = task_spec(config, task_name)
        task, samples = load_samples(spec_of_task)
        prompts = [s.prompt for s in samples]
        groups: dict[str, dict[str, Strategy]] = {
            "baselines": {"full": Strategy.full(), "oracle": Strategy(oracle=True),
                          **{f"prune{n}": Strategy.prune(bb.num_layers, n) for n in entry.get("prune", [])}}}
        for kind in KINDS:
            rule = untrained_rule(kind, calibration, prompts[:4], exit_share=0.5)
            for policy in entry["policies"]:
                groups[f"{kind}-{policy}"] = {f"ee-{kind}-{policy}-t0.5": Strategy.early_exit(rule, policy)}
        for group in groups.values():
            decoders = [Decoder(spec=decode_spec(config, "smollm2", task_name, method), backbone=bb,
                                strategy=strategy, exit_layers=exits) for method, strategy in group.items()]
            decoded = decode_each(decoders, prompts, task.stop_strings, disable_tqdm=True)
            for decoder, (method, _), (generations, agreement) in zip(decoders, group.items(), decoded):
                header = {HEADER_KEY: decoder.spec.to_dict(), "task_spec": spec_of_task.to_dict(), "exit_layers": exits}
                write_generations(out / task_name / f"{method}.jsonl", header,
                                  [{"id": s.id, **trace_record(s.prompt, g)} for s, g in zip(samples, generations)])
                agreements[f"{task_name}/{method}"] = None if agreement is None else agreement.as_dict()
                print(task_name, method, {k: v for k, v in (agreement.as_dict() if agreement else {}).items()
                                          if k in ("rows_with_near_ties", "rows_redecoded", "rows_differing")},
                      flush=True)
    write_json(out / "agreements.json", agreements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="the checkout of the engine before the change")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--scratch", type=Path, default=HERE.parent / "out" / "generation_ab")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/generation_ab.json"))
    args = parser.parse_args()
    if args.worker:
        worker(args.limit, args.worker)
        return
    if args.before is None:
        parser.error("pass --before <checkout of the code before>")
    roots = {"before": args.before.resolve(), "after": HERE.parents[1]}
    for version, root in roots.items():
        print(f"{version}: {root}", flush=True)
        subprocess.run([sys.executable, str(HERE), "--worker", str(args.scratch / version), "--limit", str(args.limit)],
                       env={**os.environ, "PYTHONPATH": str(root)}, check=True)
    before, after = args.scratch / "before", args.scratch / "after"
    files = sorted(p.relative_to(after) for p in after.rglob("*.jsonl"))
    differing = [str(f) for f in files if not filecmp.cmp(before / f, after / f, shallow=False)]
    agreements = {v: json.loads((args.scratch / v / "agreements.json").read_text()) for v in roots}

    def total(version: str, key: str) -> int:
        return sum(a[key] for a in agreements[version].values() if a is not None)

    from dynamax_bench.files import write_json
    from dynamax_bench.provenance import machine_description

    write_json(args.out, {
        "what": __doc__.split("\n\n")[0], "machine": machine_description(), "limit": args.limit,
        "versions": {v: str(r) for v, r in roots.items()}, "files": len(files),
        "files_differing": differing,
        "totals": {v: {key: total(v, key) for key in ("rows", "rows_with_near_ties", "rows_redecoded",
                                                    "tokens_redecoded", "rows_differing", "unexplained")}
                   for v in roots},
        "agreements": agreements,
    })
    print(f"{len(files) - len(differing)} of {len(files)} files equal byte for byte; differing: {differing}")


if __name__ == "__main__":
    main()
