def generate_inputs(wildcards):
    """The backbone, and for an ee method the trained classifiers of its kind."""
    inputs = {"backbone": f"resources/backbones/{wildcards.backbone}"}
    method = parse_method(wildcards.method)
    if method.kind == "ee" and is_trained(method.exit_kind):
        inputs["classifiers"] = f"{RESULTS}/classifiers/{wildcards.backbone}/{method.exit_kind}.safetensors"
    return inputs


rule generate:
    """Early-exit generation of one method on one task: one JSONL line per sample."""
    input:
        unpack(generate_inputs),
    output:
        f"{RESULTS}/generations/{{backbone}}/{{task}}/{{method}}.jsonl",
    params:
        # listed so that a change to any of them reruns the cell
        spec=lambda w: config["backbones"][w.backbone],
        task=lambda w: config["tasks"][w.task],
        generation=config["generation"],
    log:
        f"{LOGS}/generate/{{backbone}}/{{task}}/{{method}}.log",
    threads: THREADS
    script:
        "../scripts/generate.py"
