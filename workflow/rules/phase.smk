# Stage 3: phase retrieval, scattered over angle chunks (Fresnel propagation couples rows and columns).


rule phase_init:
    input:
        "results/{sample}/ingest.json",
    output:
        "results/{sample}/phase.ome.zarr.init.json",
    log:
        "logs/phase_init/{sample}.log",
    benchmark:
        "results/benchmarks/phase_init/{sample}.tsv"
    conda:
        f"{ENVS}/tomo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        p=lambda w: as_json(
            {"angle_chunk": config["angle_chunk"], "slab_rows": config["slab_rows"]}
            | config["phase"]
        ),
    shell:
        "holocat phase init {input} results/{wildcards.sample}/phase.ome.zarr --params {params.p} >{log} 2>&1"


rule phase:
    input:
        raw_scan,
        ingest="results/{sample}/ingest.json",
        init="results/{sample}/phase.ome.zarr.init.json",
    output:
        "results/{sample}/phase.ome.zarr.parts/{chunk}.json",
    log:
        "logs/phase/{sample}/{chunk}.log",
    benchmark:
        "results/benchmarks/phase/{sample}/{chunk}.tsv"
    conda:
        f"{ENVS}/tomo.yaml"
    threads: 2
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
        gpu=0,
    params:
        raw=raw_scan_path,
        p=lambda w: as_json(config["phase"]),
        code=code_digest("tomo"),
    shell:
        "holocat phase chunk {params.raw} {input.ingest} results/{wildcards.sample}/phase.ome.zarr "
        "--chunk {wildcards.chunk} --params {params.p} --out {output} >{log} 2>&1"


rule phase_gather:
    input:
        init="results/{sample}/phase.ome.zarr.init.json",
        parts=angle_chunk_parts,
    output:
        "results/{sample}/phase.ome.zarr.manifest.json",
    log:
        "logs/phase_gather/{sample}.log",
    benchmark:
        "results/benchmarks/phase_gather/{sample}.tsv"
    conda:
        f"{ENVS}/tomo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "holocat gather results/{wildcards.sample}/phase.ome.zarr {input.parts} --stage phase >{log} 2>&1"
