# Stage 4: tomographic reconstruction (FBP), scattered over detector-row slabs.


rule reconstruct_init:
    input:
        "results/{sample}/phase.ome.zarr.manifest.json",
    output:
        "results/{sample}/volume.ome.zarr.init.json",
    log:
        "logs/reconstruct_init/{sample}.log",
    benchmark:
        "results/benchmarks/reconstruct_init/{sample}.tsv"
    conda:
        f"{ENVS}/tomo.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=10,
    params:
        p=lambda w: as_json(config["reconstruct"] | {"slab_rows": config["slab_rows"]}),
        code=code_digest("tomo"),
    shell:
        "holocat reconstruct init results/{wildcards.sample}/phase.ome.zarr "
        "results/{wildcards.sample}/volume.ome.zarr --params {params.p} >{log} 2>&1"


rule reconstruct:
    input:
        phase="results/{sample}/phase.ome.zarr.manifest.json",
        init="results/{sample}/volume.ome.zarr.init.json",
    output:
        "results/{sample}/volume.ome.zarr.parts/{slab}.json",
    log:
        "logs/reconstruct/{sample}/{slab}.log",
    benchmark:
        "results/benchmarks/reconstruct/{sample}/{slab}.tsv"
    conda:
        f"{ENVS}/tomo.yaml"
    threads: 2
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
        gpu=0,
    params:
        p=lambda w: as_json(config["reconstruct"]),
        code=code_digest("tomo"),
    shell:
        "holocat reconstruct slab results/{wildcards.sample}/phase.ome.zarr "
        "results/{wildcards.sample}/volume.ome.zarr --slab {wildcards.slab} --params {params.p} "
        "--out {output} >{log} 2>&1"


rule reconstruct_gather:
    input:
        init="results/{sample}/volume.ome.zarr.init.json",
        parts=slab_parts("reconstruct"),
    output:
        "results/{sample}/volume.ome.zarr.manifest.json",
    log:
        "logs/reconstruct_gather/{sample}.log",
    benchmark:
        "results/benchmarks/reconstruct_gather/{sample}.tsv"
    conda:
        f"{ENVS}/tomo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "holocat gather results/{wildcards.sample}/volume.ome.zarr {input.parts} --stage reconstruct "
        ">{log} 2>&1"
