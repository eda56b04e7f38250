"""Distillation on the smoke backbone: top-k choice, training, clean splits, the weight ablation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dynamax_bench.backbones.prepare import Backbone
from dynamax_bench.classifiers.ablation import exit_weight_ablation
from dynamax_bench.classifiers.checkpoints import load_classifiers
from dynamax_bench.classifiers.distill import distill, load_store, select_top_k
from dynamax_bench.classifiers.oracle import OracleStore, extract_oracle
from dynamax_bench.classifiers.training import Variant, exit_weights, train_variants
from dynamax_bench.files import read_json, write_jsonl
from dynamax_bench.reporting.tables.distillation import (
    distillation_table,
    exit_weight_ablation_table,
    top_k_selection_table,
)

SENTENCES = [
    "The river flows past the old mill and into the lake.",
    "Seven children played football in the park after school.",
    "A recipe for bread needs flour, water, salt and yeast.",
    "The library opens at nine and closes at five on weekdays.",
]
SETTINGS = {"epochs": 6, "batch_size": 4, "learning_rate": 3e-3, "weight_decay": 0.01, "balance_classes": True,
            "exit_weights": "decaying", "share_parameters": False, "validation_fraction": 0.2, "test_fraction": 0.2,
            "top_k": {"candidates": [1, 3, 5, 10], "probe": "calm"}}
THRESHOLDS = [0.5, 0.8]
SEED = 1234


def test_exit_weights_decay_linearly_and_sum_to_one() -> None:
    assert exit_weights(4, "decaying") == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert exit_weights(2, "uniform") == [0.5, 0.5]
    with pytest.raises(ValueError, match="uniform"):
        exit_weights(2, "cubic")


@pytest.fixture(scope="module")
def oracle_dir(tmp_path_factory: pytest.TempPathFactory, tiny_mistral: Backbone) -> Path:
    """20 documents on 10 topics (2 each), stored in several shards."""
    root = tmp_path_factory.mktemp("distill")
    docs = [{"id": str(i), "topic": f"topic {i % 10}", "text": " ".join(SENTENCES[(i + j) % 4] for j in range(6))}
            for i in range(20)]
    write_jsonl(root / "corpus.jsonl", docs)
    extract_oracle(tiny_mistral.model.name_or_path, root / "corpus.jsonl", root / "oracle", exits={"count": 4},
                   max_length=64, shard_mb=0.2)
    return root / "oracle"


@pytest.fixture(scope="module")
def selection(tmp_path_factory: pytest.TempPathFactory, oracle_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("top_k") / "tiny_mistral.json"
    select_top_k(oracle_dir, out, probe="calm", options={}, settings=SETTINGS, thresholds=THRESHOLDS, seed=SEED)
    return out


def test_top_k_choice_follows_its_criterion(selection: Path) -> None:
    """The chosen k is the largest candidate at or above k=1's lower 95% bound at every threshold,
    and every candidate's test metrics come from the same oracle pass (labels relax with k)."""
    info = read_json(selection)
    assert sorted(int(k) for k in info["sweep"]) == [1, 3, 5, 10] and info["reference"] == 1
    for k, verdict in info["candidates"].items():
        for t, check in verdict["thresholds"].items():
            assert check["floor"] == info["sweep"]["1"]["validation"]["early_exit"][t]["interval"][0]
            assert check["admissible"] == (k == "1" or check["consistency"] >= check["floor"])
        assert verdict["admissible"] == all(c["admissible"] for c in verdict["thresholds"].values())
    admissible = [int(k) for k, v in info["candidates"].items() if v["admissible"]]
    assert info["chosen"] == max(admissible)
    rates = [info["sweep"][str(k)]["test"]["exits"]["4"]["positive_rate"] for k in (1, 3, 5, 10)]
    assert rates == sorted(rates) and rates[-1] > rates[0]
    sim = info["sweep"]["1"]["validation"]["early_exit"]["0.5"]
    assert 0.0 <= sim["savings"] <= 1.0 and sim["interval"][0] <= sim["consistency"] <= sim["interval"][1]


def test_test_split_holds_topics_training_never_saw(oracle_dir: Path) -> None:
    store, splits, record = load_store(oracle_dir, SETTINGS, SEED)
    topics = {s: {store.meta["documents"][d]["topic"] for d in docs} for s, docs in splits.items()}
    assert topics["test"].isdisjoint(topics["train"]) and topics["validation"].isdisjoint(topics["train"])
    assert topics["test"].isdisjoint(topics["validation"])
    assert record["by"] == "topic" and record["documents"] == {"train": 12, "validation": 4, "test": 4}


@pytest.mark.parametrize("kind", ["calm", "ffn", "mamba"])
def test_training_lowers_the_validation_loss(tmp_path: Path, oracle_dir: Path, selection: Path, kind: str) -> None:
    options = {"head_dim": 16, "chunk_size": 64} if kind == "mamba" else {}  # the smoke profile's (64-token documents)
    info = distill(oracle_dir, selection, kind, tmp_path / f"{kind}.safetensors", options=options, settings=SETTINGS,
                   thresholds=THRESHOLDS, seed=SEED)
    assert info["validation"]["loss"] < info["validation_initial_loss"] and info["training"]["selected_epoch"] >= 1
    assert info["training"]["top_k"] == read_json(selection)["chosen"] == info["top_k_selection"]["chosen"]
    assert info["dtype"] == "float32"
    assert info["oracle"] == {"name": "tiny_mistral", "sha256": OracleStore(oracle_dir).digest}  # what the gate names
    environment = info["environment"]  # trained deterministically at the job's threads, and says where
    assert environment["deterministic_algorithms"] and not torch.are_deterministic_algorithms_enabled()
    assert environment["threads"] == torch.get_num_threads() and environment["torch"] == torch.__version__
    exits = info["test"]["exits"]
    assert sorted(exits) == ["4", "5", "6", "7"]
    for metrics in exits.values():
        assert set(metrics) >= {"positive_rate", "accuracy", "precision", "recall", "f1"}
        assert 0.0 <= metrics["f1"] <= 1.0 and metrics["tokens"] == exits["4"]["tokens"]
    assert exits["4"]["tokens"] == info["split"]["tokens"]["test"]
    assert set(info["test"]["early_exit"]) == {"0.5", "0.8"}
    loaded, meta = load_classifiers(tmp_path / f"{kind}.safetensors")
    assert sorted(loaded) == [4, 5, 6, 7] and meta["kind"] == kind and len(meta["curve"]) == 6
    assert all(p.dtype == torch.float32 for clf in loaded.values() for p in clf.state_dict().values())


def test_a_selection_from_another_split_is_refused(tmp_path: Path, oracle_dir: Path, selection: Path) -> None:
    settings = {**SETTINGS, "test_fraction": 0.3}
    with pytest.raises(ValueError, match="another split"):
        distill(oracle_dir, selection, "calm", tmp_path / "calm.safetensors", options={}, settings=settings,
                thresholds=THRESHOLDS, seed=SEED)


def test_variants_trained_together_equal_variants_trained_alone(oracle_dir: Path) -> None:
    """The k sweep trains its variants in one pass: each must end exactly where it would alone."""
    store, splits, _ = load_store(oracle_dir, SETTINGS, SEED)
    settings = {**SETTINGS, "epochs": 2}
    together = train_variants(store, "calm", {}, [Variant(1), Variant(5, "uniform")], splits, settings, SEED)
    (alone,) = train_variants(store, "calm", {}, [Variant(5, "uniform")], splits, settings, SEED)
    assert together[1].curve == alone.curve and together[1].selected_epoch == alone.selected_epoch
    for name, value in alone.last_parameters.items():
        assert torch.equal(together[1].last_parameters[name], value), name


def test_shared_parameters_are_one_classifier_saved_per_exit(tmp_path: Path, oracle_dir: Path, selection: Path) -> None:
    settings = {**SETTINGS, "share_parameters": True, "epochs": 2}
    distill(oracle_dir, selection, "calm", tmp_path / "calm.safetensors", options={}, settings=settings,
            thresholds=THRESHOLDS, seed=SEED)
    loaded, meta = load_classifiers(tmp_path / "calm.safetensors")
    assert meta["training"]["share_parameters"] is True
    assert torch.equal(loaded[4].linear.weight, loaded[7].linear.weight)
    assert not torch.equal(loaded[4].mean, loaded[7].mean)  # each exit keeps its own standardisation


def test_exit_weights_act_only_on_shared_parameters(tmp_path: Path, oracle_dir: Path, selection: Path) -> None:
    """Per-exit classifiers: AdamW cancels each exit's weight, so uniform and decaying end (almost)
    equal; one classifier shared by the exits: the weights trade exits off and the parameters differ."""
    info = exit_weight_ablation(oracle_dir, selection, tmp_path / "ablation.json", probe="calm", options={},
                                settings=SETTINGS, thresholds=THRESHOLDS, seed=SEED)
    diff = info["parameter_difference"]
    assert diff["per_exit"] < 1e-4 < diff["shared"]
    assert {(r["parameters"], r["exit_weights"]) for r in info["rows"]} == {
        (p, w) for p in ("per_exit", "shared") for w in ("uniform", "decaying")}
    assert "AdamW" in info["statement"] and "do act" in info["statement"]
    assert read_json(tmp_path / "ablation.json")["statement"] == info["statement"]
    table = exit_weight_ablation_table([info])
    assert len(table) == 4 and set(table["exit weights"]) == {"uniform", "decaying"}
    shared = table[table["parameters"] == "shared"]
    assert (shared["max parameter difference, uniform vs decaying"] == diff["shared"]).all()
    assert set(table.columns) >= {"sim. consistency t=0.5", "sim. savings t=0.8", "mean test F1", "epoch kept"}


def test_distill_is_deterministic(tmp_path: Path, oracle_dir: Path, selection: Path) -> None:
    for name in ("a", "b"):
        distill(oracle_dir, selection, "calm", tmp_path / name / "calm.safetensors", options={},
                settings={**SETTINGS, "epochs": 2}, thresholds=THRESHOLDS, seed=SEED)
    assert (tmp_path / "a" / "calm.safetensors").read_bytes() == (tmp_path / "b" / "calm.safetensors").read_bytes()
    a, b = (read_json(tmp_path / n / "calm.json") for n in ("a", "b"))
    a["training"].pop("seconds"), b["training"].pop("seconds")
    assert a == b


def test_table2_reports_the_test_split_per_k_and_the_choice(tmp_path: Path, oracle_dir: Path, selection: Path) -> None:
    info = distill(oracle_dir, selection, "mamba", tmp_path / "mamba.safetensors", options={"head_dim": 16, "chunk_size": 64},
                   settings={**SETTINGS, "epochs": 1}, thresholds=THRESHOLDS, seed=SEED)
    meta = read_json(tmp_path / "mamba.json")
    table = distillation_table([meta])
    chosen = info["training"]["top_k"]
    # mamba at the chosen k, and the probe (calm) at every candidate: 1 + 4 sets of 4 exits
    assert len(table) == 5 * 4
    mamba = table[table["kind"] == "mamba"]
    assert set(mamba["top-k"]) == {chosen} and set(mamba["k choice"]) == {"chosen"}
    assert list(mamba["F1"]) == [info["test"]["exits"][str(e)]["f1"] for e in (4, 5, 6, 7)]
    assert list(mamba["test tokens"]) == [info["split"]["tokens"]["test"]] * 4
    calm = table[table["kind"] == "calm"]
    assert sorted(set(calm["top-k"])) == [1, 3, 5, 10]
    assert (calm.groupby("top-k")["positive rate"].mean().diff().dropna() >= 0).all()  # labels relax with k
    choice = top_k_selection_table([meta])
    assert len(choice) == 4 * len(THRESHOLDS) and list(choice[choice["chosen"] == "yes"]["top-k"].unique()) == [chosen]


def test_store_is_read_lazily_one_shard_at_a_time(oracle_dir: Path) -> None:
    """Opening the store reads only its index; documents come from the shards on demand, and a
    reader holds one shard open at a time (its touched pages count as resident memory)."""
    store = OracleStore(oracle_dir)
    last = store.num_documents - 1
    assert store.meta["num_shards"] > 1 and store._shard is None
    store.hidden(4, last)
    assert store._shard[0] == store.shard_of[last] != 0
    store.ranks(4, 0)
    assert store._shard[0] == 0


PLUGIN = '''
import torch
from torch import nn

from dynamax_bench.classifiers.kinds import ExitClassifier


class RunningMeanClassifier(ExitClassifier):
    """Stateful: a linear head over each position's features and the running mean of the
    features so far (state: their sum and count per row)."""

    stateful = True
    options = {}

    def __init__(self, hidden_size, **options):
        super().__init__(hidden_size, **options)
        self.linear = nn.Linear(2 * hidden_size, 2)

    def new_state(self):
        return {}

    def forward(self, hidden, state=None):
        x = self.standardise(hidden)
        total = x.cumsum(1)
        count = torch.arange(1, x.shape[1] + 1, dtype=x.dtype, device=x.device).expand(x.shape[0], -1)
        if state is not None and "sum" in state:
            total = total + state["sum"][:, None]
            count = count + state["count"][:, None]
        if state is not None:
            state["sum"], state["count"] = total[:, -1], count[:, -1]
        return self.linear(torch.cat([x, total / count[..., None]], -1))
'''


@pytest.fixture
def trained_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A throw-away installed distribution (a .dist-info on sys.path) declaring a stateful trained kind."""
    from dynamax_bench.classifiers.registry import EXIT_METHODS, load_plugins

    (tmp_path / "runningmean_exit.py").write_text(PLUGIN)
    dist = tmp_path / "runningmean_exit-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: runningmean-exit\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[dynamax_bench.exit_methods]\nrunningmean = runningmean_exit:RunningMeanClassifier\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins.cache_clear()
    yield "runningmean"
    EXIT_METHODS.pop("runningmean", None)
    import sys

    sys.modules.pop("runningmean_exit", None)
    load_plugins.cache_clear()


def test_a_trained_stateful_plugin_runs_through_distill_generate_costs_and_tables(
        tmp_path: Path, oracle_dir: Path, selection: Path, tiny_mistral: Backbone, trained_plugin: str) -> None:
    """The one registry: a kind the suite has never seen, declared by an entry point, is trained by
    `distill`, decoded by the generate rule's Decoder (batched, prefix cache on), costed as stateful
    (its pass over every prompt at every exit) and reported in Table 2."""
    from dynamax_bench.classifiers.registry import exit_method, is_trained
    from dynamax_bench.costs.flops import flops_table
    from dynamax_bench.costs.ledger import cell_flops
    from dynamax_bench.generation.decoder import Decoder
    from dynamax_bench.generation.generate import trace_record
    from dynamax_bench.spec import DecodeSpec, parse_method

    kind = trained_plugin
    assert is_trained(kind) and exit_method(kind).stateful
    info = distill(oracle_dir, selection, kind, tmp_path / f"{kind}.safetensors", options={}, settings=SETTINGS,
                   thresholds=THRESHOLDS, seed=SEED)
    loaded, meta = load_classifiers(tmp_path / f"{kind}.safetensors")
    assert len(loaded) == 4 and all(type(clf).__name__ == "RunningMeanClassifier" for clf in loaded.values())
    assert info["validation"]["loss"] < info["validation_initial_loss"]

    method = parse_method(f"ee-{kind}-copy-t0.5")
    spec = DecodeSpec(backbone="tiny_mistral", family="transformer", task="unit", method=method, exits={"count": 4},
                      repetition_penalty=1.0, max_new_tokens=6, batch_size=3, prefix_cache=True, dtype="float32",
                      device="cpu", seed=SEED)
    decoder = Decoder.for_backbone(spec, tiny_mistral, tmp_path / f"{kind}.safetensors")
    prompts = [f"{SENTENCES[0]} {SENTENCES[i]}" for i in range(4)]
    generations, agreement = decoder.decode(prompts, stop_strings=(), disable_tqdm=True)
    assert agreement is not None and not agreement.unexplained
    reference = [decoder.generator((), 6).generate(p, decoder.strategy) for p in prompts]
    assert [(g.token_ids, g.exit_layers) for g in generations] == [(g.token_ids, g.exit_layers) for g in reference]

    table = flops_table(tiny_mistral.model.name_or_path, tmp_path / "flops.json", context_length=16, kinds=[kind],
                        options={}, exits={"count": 4})
    assert "prefill" in table["exit_methods"][kind]  # costed as stateful
    records = [trace_record(p, g) for p, g in zip(prompts, generations)]
    ee = cell_flops(records, method, table)
    full = cell_flops(records, parse_method("full"), table)
    assert ee["prompt"]["executed"] > full["prompt"]["executed"]  # its prompt pass at every exit is counted

    rows = distillation_table([read_json(tmp_path / f"{kind}.json")])
    assert len(rows[rows["kind"] == kind]) == 4  # its 4 exits at the chosen k (the probe's rows beside them)
