def corpus_backbones(wildcards=None):
    return {
        source["backbone"]: f"resources/backbones/{source['backbone']}"
        for source in config["corpus"]["sources"]
        if source["kind"] == "generated"
    }


rule prepare_corpus:
    """Distillation text: FineWeb-Edu (paper), local JSONL, or text the backbone writes (offline)."""
    input:
        unpack(corpus_backbones),
    output:
        f"{RESULTS}/corpus.jsonl",
    params:
        corpus=config["corpus"],
    log:
        f"{LOGS}/prepare_corpus.log",
    threads: THREADS
    script:
        "../scripts/prepare_corpus.py"
