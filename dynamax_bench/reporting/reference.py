"""Reference files (reference/<profile>.json): read and validate them, and write one from a trusted run.

A field's expected value is one of
- a number: checked by the first matching pattern rule of `tolerances` (absolute, relative, exact);
- an interval {value, low, high, rule}: derived from the run's per-sample values
  (dynamax_bench/reporting/tolerances.py says how, and `rule` names the derivation);
- a string: the hash of the generated token ids (`generations.token_sha256`) or of the per-token
  exit layers (`generations.exit_sha256`), exact on the platform the reference was made on
  (`platform`: device, dtype, torch) while the cell's artefacts are the reference's; or the digest
  of an artefact the cell was made from (`artefacts.<role>`: backbone, classifier, oracle, task),
  which says whether the run's artefact is the reference's (dynamax_bench/artefacts.py).
A reference may hold any subset of a run's cells and fields: what it does not hold is unchecked.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dynamax_bench.config import REPO_ROOT
from dynamax_bench.files import read_json
from dynamax_bench.provenance import git_commit
from dynamax_bench.reporting import tolerances
from dynamax_bench.spec import method_of

SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "reference.schema.yaml"
HASH_FIELD = "generations.token_sha256"
EXITS_FIELD = "generations.exit_sha256"
ARTEFACTS = "artefacts"  # a cell's `artefacts` record, and the prefix of its digests in a reference cell
DEFAULT_TOLERANCES = [
    {"pattern": "metrics.*", "kind": "absolute", "tol": 0.02},
    {"pattern": "consistency.*", "kind": "absolute", "tol": 0.02},
    {"pattern": "latency.*", "kind": "relative", "tol": 0.5},
    {"pattern": "flops.*", "kind": "exact"},
    {"pattern": "*", "kind": "absolute", "tol": 1e-6},
]
# Where each kind of tolerance comes from, written into every regenerated reference.
DERIVATION = {
    "tokens": f"{HASH_FIELD}: sha256 of every sample's id and generated token ids, and {EXITS_FIELD}: of every "
              "sample's id and per-token exit layers; exact on the reference's platform (device, dtype, torch "
              "version), where greedy decoding is deterministic, unless an artefact the cell is made from was "
              "rebuilt; not gated elsewhere",
    "artefacts": f"{ARTEFACTS}.<role>: digest of the backbone weights, classifier weights, the oracle store they "
                 "were distilled from and the task's samples the cell was made from; one that differs from the "
                 "reference's (a backbone trained on another processor) is named once, and its cells' hashes "
                 "are not gated",
    "same_inputs": "a number whose inputs equal the reference's must equal it (±1e-9): task metrics read the "
                   "tokens and the task's samples, consistency the tokens and the full model's, degeneration "
                   "the tokens, layers the tokens and exits, FLOPs the tokens, exits and prompts; any "
                   "difference is a scoring or accounting regression",
    "proportion": "per-sample values all 0 or 1 (EM, *_acc, output_match, loop_rate): the Wilson score 95% interval "
                  "of the reference proportion at its n",
    "average": "other averages (F1, BLEU and ROUGE on 0-100, prefix agreement, mean exit layer, savings): the 95% "
               f"percentile bootstrap over samples ({tolerances.BOOTSTRAP_RESAMPLES} resamples, seed "
               f"{tolerances.BOOTSTRAP_SEED}); a quality metric whose samples all tie takes the Wilson interval of "
               "its value on the metric's own scale; an early-exit cell where no token exited takes the Wilson interval "
               "of its mean exit layer on the [first exit, L] scale, and its savings move by what those exits could "
               "save of the decode FLOPs",
    "length": "n_tokens within 90-110% of the reference (MLPerf Inference's tokens-per-sample rule)",
    "patterns": "plain numbers (n_samples, flops.per_token_full, values of older references): the first "
                "matching rule of `tolerances`",
    "latency": "only where the reference holds latency values (relative, `latency.*` rule); machine-specific, so "
               "regenerate records them only with --with-latency",
}


# How a cell was made, not what it measured; and what is derived from gated fields: the intervals
# (resampled from the per-sample values behind the gated metrics) and a batched run's agreement
# with batch 1 (its generations are the batch-1 ones, gated by their token hash).
SKIPPED_ROOTS = ("provenance", "spec", "task_spec", "intervals", "agreement")


class ReferenceError(ValueError):
    """A reference file that cannot be used; the message names the file, the field and the fix."""


def regenerate_command(results_dir: str | Path, reference_path: str | Path) -> str:
    return f"python -m dynamax_bench.reporting.check {results_dir} {reference_path} --regenerate --reason '<why>'"


def load_reference(path: str | Path) -> dict:
    """A reference validated against workflow/schemas/reference.schema.yaml."""
    path = Path(path)
    if not path.exists():
        raise ReferenceError(f"reference file {path} not found; create it from a trusted run of the profile with "
                             f"`{regenerate_command('results/<profile>', path)}`")
    try:
        reference = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReferenceError(f"{path}: not valid JSON ({err}); restore it with `git checkout -- {path}` "
                             "or regenerate it") from None
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(reference), key=lambda e: list(e.path))
    if errors:
        where = ".".join(map(str, errors[0].absolute_path)) or "<top>"
        raise ReferenceError(f"{path}: invalid reference at '{where}': {errors[0].message} "
                             f"(schema: {SCHEMA_PATH.relative_to(REPO_ROOT)})")
    if "sources" in reference:
        unsourced = [f"{cell}:{field}" for cell, fields in reference["cells"].items() for field in fields
                     if f"{cell}:{field}" not in reference["sources"]]
        if unsourced:
            raise ReferenceError(f"{path}: values without a source (table and row of the paper): {unsourced[:5]}; "
                                 "add sources['<cell>:<field>']")
    return reference


def numeric_fields(record: dict, prefix: str = "") -> dict[str, float]:
    """Dotted path -> number for every numeric leaf of a cell or latency record (provenance and specs excluded)."""
    fields: dict[str, float] = {}
    for key, value in record.items():
        path = f"{prefix}{key}"
        if not prefix and key in SKIPPED_ROOTS:
            continue
        if isinstance(value, dict):
            fields.update(numeric_fields(value, f"{path}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            fields[path] = float(value)
    return fields


def records_hash(records: list[dict], key: str) -> str:
    """sha256 (first 16 hex digits) of every sample's id and its `key` list, in order."""
    canonical = json.dumps([[r["id"], r[key]] for r in records], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def token_hash(records: list[dict]) -> str:
    """Every sample's id and generated token ids."""
    return records_hash(records, "token_ids")


def exits_hash(records: list[dict]) -> str:
    """Every sample's id and per-token executed layers."""
    return records_hash(records, "layers_executed")


def artefact_digests(cell: dict) -> dict[str, str]:
    """`artefacts.<role>` -> digest of each artefact a cell records (none for a cell scored before they were)."""
    return {f"{ARTEFACTS}.{role}": record["sha256"] for role, record in (cell.get(ARTEFACTS) or {}).items()}


def platform_of(cell: dict) -> dict[str, str]:
    """Where a cell's tokens were made: what greedy decoding's bits depend on."""
    return {"device": cell["spec"]["device"], "dtype": cell["spec"]["dtype"],
            "torch": cell["provenance"]["versions"].get("torch", "unknown")}


def metric_bounds(name: str) -> tuple[float, float]:
    """A task metric's scale: TruthfulQA's BLEU/ROUGE on 0-100 (their diffs on -100..100), the rest 0-1."""
    if name.endswith("_diff"):
        return -100.0, 100.0
    if name.startswith(("bleu", "rouge")) and not name.endswith("_acc"):
        return 0.0, 100.0
    return 0.0, 1.0


def derived_fields(results_dir: Path, key: str, cell: dict) -> dict[str, Any]:
    """The gated fields of one cell, with tolerances derived from the per-sample values the score
    rule wrote into it (`per_sample`); the token hash reads the cell's generations."""
    from dynamax_bench.generation.generate import read_generations
    from dynamax_bench.reporting.statistics import per_sample_of

    _, records = read_generations(results_dir / "generations" / f"{key}.jsonl")
    samples = per_sample_of(cell)

    def field(value: float, values: list, bounds: tuple[float, float] | None = None, statistic=None) -> dict:
        return {"value": value, **tolerances.interval(value, values, bounds, statistic)}

    fields: dict[str, Any] = {HASH_FIELD: token_hash(records), EXITS_FIELD: exits_hash(records),
                              **artefact_digests(cell), "n_samples": cell["n_samples"],
                              "n_tokens": {"value": cell["n_tokens"], **tolerances.length_window(cell["n_tokens"])},
                              "flops.per_token_full": cell["flops"]["per_token_full"]}
    for name, value in cell["metrics"].items():
        fields[f"metrics.{name}"] = field(value, samples[f"metrics.{name}"], metric_bounds(name))
    for name in ("output_match", "token_prefix_agreement"):
        fields[f"consistency.{name}"] = field(cell["consistency"][name], samples[f"consistency.{name}"], (0, 1))
    fields["degeneration.loop_rate"] = field(cell["degeneration"]["loop_rate"], samples["degeneration.loop_rate"], (0, 1))
    fields["layers.mean_executed"] = field(
        cell["layers"]["mean_executed"], list(zip(samples["layers.executed"], samples["tokens.generated"])),
        statistic=tolerances.ratio)
    fields["flops.savings"] = field(  # each sample's executed and full FLOPs, prompt included
        cell["flops"]["savings"], list(zip(samples["flops.executed"], samples["flops.full"])),
        statistic=tolerances.saving)
    layers = cell["layers"]
    if method_of(cell).kind == "ee" and layers["mean_executed"] == layers["num_layers"] and layers["exit_positions"]:
        tolerances.without_exits(fields["layers.mean_executed"], fields["flops.savings"], cell["n_samples"],
                                 layers["num_layers"], min(layers["exit_positions"]),
                                 sum(samples["flops.decode_full"]) / sum(samples["flops.full"]))
    return fields


def run_cells(results_dir: Path) -> dict[str, Path]:
    """Cell key (`<backbone>/<task>/<method>`) -> cell file of a run."""
    cells_dir = results_dir / "cells"
    if not cells_dir.is_dir():
        raise FileNotFoundError(f"no cells under {cells_dir}; run the profile first "
                                f"(snakemake {results_dir}/check.txt --configfile config/<profile>.yaml)")
    files = {p.relative_to(cells_dir).with_suffix("").as_posix(): p for p in sorted(cells_dir.rglob("*.json"))}
    if not files:
        raise FileNotFoundError(f"{cells_dir} holds no cell files; run the profile first")
    return files


def read_latency(results_dir: str | Path) -> dict[str, dict[str, float]]:
    """`<backbone>/<method>` -> the numbers of a run's latency files, prefixed `latency.`."""
    root = Path(results_dir) / "latency"
    return {p.relative_to(root).with_suffix("").as_posix(): {f"latency.{k}": v for k, v in numeric_fields(read_json(p)).items()}
            for p in sorted(root.rglob("*.json"))}


def build_reference(results_dir: str | Path, reference_path: str | Path, reason: str, *, merge: bool = False,
                    with_latency: bool = False) -> dict:
    """A reference from a run, recording who, when, from what and why.

    An existing reference is never shrunk silently: when the run lacks some of its cells, this
    refuses (ReferenceError) unless `merge`, which replaces only the run's cells and keeps the rest.
    """
    results_dir, reference_path = Path(results_dir), Path(reference_path)
    previous = load_reference(reference_path) if reference_path.exists() else None
    files = run_cells(results_dir)
    cells = {key: read_json(path) for key, path in files.items()}
    platforms = {json.dumps(platform_of(c), sort_keys=True) for c in cells.values()}
    if len(platforms) != 1:
        raise ReferenceError(f"{results_dir}: cells come from several platforms {sorted(platforms)}; rerun the profile on one")
    platform = platform_of(next(iter(cells.values())))
    kept: dict[str, Any] = {}
    if previous is not None:
        missing = sorted(set(previous["cells"]) - set(cells))
        if missing and not merge:
            raise ReferenceError(
                f"refusing to shrink {reference_path}: the run in {results_dir} has {len(cells)} cells, the reference "
                f"{len(previous['cells'])}, and {len(missing)} of the reference's cells are not in the run (e.g. "
                f"{', '.join(missing[:3])}). Run the whole profile first, or pass --merge to replace only the run's "
                f"{len(cells)} cells and keep the others")
        if merge:
            if previous.get("platform") not in (None, platform):
                raise ReferenceError(f"cannot merge into {reference_path}: its tokens come from {previous['platform']}, "
                                     f"this run's from {platform}; regenerate it whole from one platform")
            kept = {k: v for k, v in previous["cells"].items() if k not in cells}
    reference = {
        "profile": cells[next(iter(cells))]["provenance"]["profile"],
        "generated": {
            "by": f"{getpass.getuser()}@{socket.gethostname()}",
            "at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "from": str(results_dir),
            "git_commit": git_commit(),
            "reason": reason + (f" (merged: {len(cells)} cells replaced, {len(kept)} kept)" if merge else ""),
        },
        "platform": platform,
        "derivation": DERIVATION,
        "tolerances": previous["tolerances"] if previous else DEFAULT_TOLERANCES,
        "cells": {**kept, **{key: derived_fields(results_dir, key, cell) for key, cell in cells.items()}},
    }
    if with_latency:
        reference["latency"] = {key: {path: v for path, v in fields.items() if path.endswith(".median")}
                                for key, fields in read_latency(results_dir).items()}
    elif previous is not None and previous.get("latency"):
        reference["latency"] = previous["latency"]
    return reference
