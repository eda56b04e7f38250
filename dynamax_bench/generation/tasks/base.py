"""Task interface: read records in the Hugging Face schema, build lm-eval-style prompts, score outputs."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from dynamax_bench.files import numbered_jsonl, read_json

# The splits of an embedded set, as a source names them (`{kind: embedded, split: <split>}`): the
# evaluated samples (validation, the default of `source`), a calibration split disjoint from them
# (thresholds calibrated there are never tuned on evaluated samples) and the few-shot pool (train,
# the default of `fewshot_source`). Files: <task>.jsonl, <task>.calibration.jsonl, <task>.train.jsonl.
EMBEDDED_SPLITS = ("validation", "calibration", "train")

# lm-eval's default --fewshot_random_seed (lm_eval.defaults.DEFAULT_OTHER_SEED; tests/test_lmeval_tasks.py
# keeps them equal), written out so that the score rule reads tasks without importing lm-eval
FEWSHOT_SEED = 1234


@dataclass(frozen=True)
class Sample:
    id: str
    prompt: str  # the exact text given to the tokenizer
    target: dict[str, Any]
    # samples of one group are not independent (the turns of one CoQA story): intervals resample whole
    # groups, calibration counts a group as one unit; a sample of its own by default
    group: str = ""

    @property
    def unit(self) -> str:
        return self.group or self.id


def _question_key(text: str) -> str:
    return " ".join(text.casefold().split())


def require(record: dict, key: str, kind: type | tuple[type, ...], where: str, field: str | None = None) -> Any:
    """A required field of the given type(s), or an error naming file, line and field."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise ValueError(f"{where}: missing field '{field or key}'")
    value = record[key]
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{where}: field '{field or key}' must be {expected}, got {type(value).__name__}")
    return value


class Task(ABC):
    """One evaluation task, and the one source of its lm-eval task file (dynamax_bench/lmeval/task_files.py
    writes the YAML from these attributes). Prompts follow lm-eval: few-shot examples, each
    `doc_to_text + target_delimiter + doc_to_target + fewshot_delimiter`, then the query's
    `doc_to_text`; the examples are drawn per sample as lm-eval's default sampler draws them."""

    name: ClassVar[str]
    hub_default: ClassVar[dict[str, str]]
    embedded_file: ClassVar[str]  # the evaluated samples (split validation)
    embedded_calibration_file: ClassVar[str | None] = None  # the calibration split, disjoint from them
    # None: the task has no few-shot pool (its lm-eval prompt is fixed, e.g. TruthfulQA's QA primer)
    embedded_fewshot_file: ClassVar[str | None] = None
    stop_strings: ClassVar[tuple[str, ...]]  # lm-eval's generation_kwargs.until
    metrics: ClassVar[tuple[str, ...]]
    options: ClassVar[tuple[str, ...]] = ()  # task-specific config keys passed to the constructor
    target_delimiter: ClassVar[str] = " "
    fewshot_delimiter: ClassVar[str] = "\n\n"
    lm_eval_name: ClassVar[str | None] = None  # the lm-eval task name; default dynamax_<name>
    lm_eval_fewshot: ClassVar[int] = 0  # num_fewshot of the lm-eval task file (a profile sets its own)

    @abstractmethod
    def parse(self, record: dict, where: str, index: int) -> dict[str, Any]:
        """Validate one record (`where` is 'file:line' for errors) and keep what the task needs."""

    @abstractmethod
    def doc_to_text(self, doc: dict[str, Any]) -> str: ...

    @abstractmethod
    def doc_to_target(self, doc: dict[str, Any]) -> str:
        """The answer text shown after a few-shot example."""

    @abstractmethod
    def score_one(self, sample: Sample, output: str) -> dict[str, float]:
        """Metrics of one raw generation (already cut at the stop strings), as lm-eval computes them."""

    def expand(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """The samples one record yields (one by default; a CoQA story yields one per turn scored)."""
        return [doc]

    def load(
        self,
        source: dict,
        limit: int | None = None,
        num_fewshot: int = 0,
        fewshot_source: dict | None = None,
    ) -> list[Sample]:
        """Samples from the project's embedded set, a local JSON/JSONL file, or the hub."""
        docs = [sample for doc in self.read(source) for sample in self.expand(doc)]
        if limit is not None:
            docs = docs[:limit]
        contexts = self.fewshot_contexts(docs, num_fewshot, self.pool_source(fewshot_source, source))
        return [Sample(id=doc["id"], prompt=context + self.doc_to_text(doc), target=doc, group=doc.get("group", ""))
                for doc, context in zip(docs, contexts)]

    def fewshot_contexts(self, docs: list[dict[str, Any]], num_fewshot: int, source: dict) -> list[str]:
        """Each sample's few-shot examples, drawn as lm-eval 0.4's default sampler draws them.

        lm-eval seeds one `random.Random` with its default few-shot seed (1234) and, for each
        evaluated document in order, samples from the whole pool (the training split). As the
        task's few-shot split and test split are both unset (lm-eval's triviaqa), it passes the
        document to the sampler, which draws n + 1 examples, drops any equal to the document and
        keeps the first n. The pool never holds an evaluated document here (that stops with an
        error), so the first n of the n + 1 drawn are the ones lm-eval shows.
        """
        if num_fewshot == 0:
            return [""] * len(docs)
        pool = self.fewshot_pool(source, docs)
        if len(pool) < num_fewshot + 1:
            raise ValueError(f"task {self.name}: {num_fewshot} few-shot examples asked; lm-eval's sampler draws "
                             f"{num_fewshot + 1} from the pool, which has {len(pool)}")
        rnd = random.Random(FEWSHOT_SEED)
        return ["".join(self.doc_to_text(shot) + self.target_delimiter + self.doc_to_target(shot) + self.fewshot_delimiter
                        for shot in rnd.sample(pool, num_fewshot + 1)[:num_fewshot])
                for _ in docs]

    def fewshot_pool(self, source: dict, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The few-shot pool, or an error when it holds an evaluated sample (same id or same question):
        its example would show the answer to the question it precedes."""
        if self.embedded_fewshot_file is None:
            raise ValueError(
                f"task {self.name} takes no few-shot examples (lm-eval's prompt for it is fixed); "
                f"set tasks.{self.name}.num_fewshot to 0"
            )
        pool = self.read(source)
        shared = [doc["id"] for doc in self.in_pool(pool, docs)]
        if shared:
            raise ValueError(
                f"task {self.name}: the few-shot pool {source} holds {len(shared)} evaluated samples "
                f"(e.g. {shared[:3]}); point tasks.{self.name}.fewshot_source at examples disjoint from the "
                "evaluated ones, or remove these from the pool"
            )
        return pool

    def in_pool(self, pool: list[dict[str, Any]], docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The evaluated docs that are also in the few-shot pool: same id, or the same question up to
        case and spacing. The whole pool counts, whatever examples the sampler draws from it."""
        ids = {shot["id"] for shot in pool}
        questions = {_question_key(self.doc_to_text(shot)) for shot in pool}
        return [doc for doc in docs if doc["id"] in ids or _question_key(self.doc_to_text(doc)) in questions]

    def pool_source(self, fewshot_source: dict | None, source: dict) -> dict:
        """Where few-shot examples come from; `{kind: embedded}` is the embedded few-shot pool (split
        train), never the embedded evaluation set."""
        if fewshot_source is None:
            return self.default_fewshot_source(source)
        if fewshot_source["kind"] == "embedded" and "split" not in fewshot_source:
            return {"kind": "embedded", "split": "train"}
        return fewshot_source

    def default_fewshot_source(self, source: dict) -> dict:
        if source["kind"] == "embedded":
            return {"kind": "embedded", "split": "train"}
        if source["kind"] == "hub":
            return {**source, "split": "train"}
        return {"kind": "missing"}

    def read(self, source: dict) -> list[dict[str, Any]]:
        kind = source["kind"]
        if kind == "embedded":
            located = self._read_local(self.embedded_path(source.get("split", "validation")))
        elif kind == "local":
            located = self._read_local(Path(source["path"]))
        elif kind == "hub":
            located = self._read_hub(source)
        elif kind == "missing":
            raise ValueError(f"task {self.name}: few-shot examples need a `fewshot_source` for a local data file")
        else:
            raise ValueError(f"unknown task source kind {kind!r}; use embedded, local or hub")
        return [self.parse(record, where, i) for i, (record, where) in enumerate(located)]

    def embedded_path(self, split: str) -> Path:
        """The file of one split of the embedded set (EMBEDDED_SPLITS)."""
        files = {"validation": self.embedded_file, "calibration": self.embedded_calibration_file,
                 "train": self.embedded_fewshot_file}
        if files.get(split) is None:
            have = [name for name in EMBEDDED_SPLITS if files[name] is not None]
            raise ValueError(f"task {self.name} has no embedded {split!r} split; use one of {have}")
        return Path(str(resources.files("dynamax_bench.data") / files[split]))

    def _read_local(self, path: Path) -> list[tuple[dict, str]]:
        if not path.exists():
            raise FileNotFoundError(f"task {self.name}: data file {path} not found")
        if path.suffix == ".jsonl":
            return [(record, f"{path}:{line}") for line, record in numbered_jsonl(path)]
        data = read_json(path)
        records = data["data"] if isinstance(data, dict) and "data" in data else data
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a list of records (or an object with 'data')")
        return [(r, f"{path}:record {i}") for i, r in enumerate(records)]

    def _read_hub(self, source: dict) -> list[tuple[dict, str]]:
        import datasets

        spec = {**self.hub_default, **{k: v for k, v in source.items() if k != "kind"}}
        try:
            dataset = datasets.load_dataset(
                spec["path"], spec.get("name"), split=spec["split"], revision=spec.get("revision")
            )
        except Exception as err:  # the datasets library raises many types when the hub is unreachable
            raise RuntimeError(
                f"task {self.name}: cannot load {spec['path']} ({spec.get('name')}, {spec['split']}) from the "
                f"Hugging Face hub: {err}. Offline, export it to JSONL on a machine with network and point the "
                f"task's source at `kind: local, path: <file>`."
            ) from err
        return [(dict(r), f"{spec['path']}[{i}]") for i, r in enumerate(dataset)]
