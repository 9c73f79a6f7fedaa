# Stage 6: particle attributes (Table S1) per z-slab on whole particles, gathered into one table.


rule attributes:
    input:
        labels="results/{sample}/labels.ome.zarr.manifest.json",
        index="results/{sample}/labels.index.parquet",
        volume="results/{sample}/volume.ome.zarr.manifest.json",
    output:
        "results/{sample}/attributes.parts/{slab}.parquet",
    log:
        "logs/attributes/{sample}/{slab}.log",
    benchmark:
        "results/benchmarks/attributes/{sample}/{slab}.tsv"
    conda:
        f"{ENVS}/core.yaml"
    threads: 2
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    params:
        p=lambda w: as_json(config["attributes"] | {"slab_rows": config["slab_rows"]}),
        code=code_digest("attributes"),
    shell:
        "holocat attributes slab results/{wildcards.sample}/labels.ome.zarr "
        "results/{wildcards.sample}/volume.ome.zarr --index {input.index} --slab {wildcards.slab} "
        "--params {params.p} --out {output} --workers {threads} >{log} 2>&1"


rule attributes_gather:
    input:
        labels="results/{sample}/labels.ome.zarr.manifest.json",
        parts=slab_parts("attributes"),
    output:
        table="results/{sample}/attributes.parquet",
        csv="results/{sample}/attributes.csv",
    log:
        "logs/attributes_gather/{sample}.log",
    benchmark:
        "results/benchmarks/attributes_gather/{sample}.tsv"
    conda:
        f"{ENVS}/core.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    params:
        p=lambda w: as_json(
            config["attributes"]
            | {
                "sample": w.sample,
                "cycles": SAMPLES[w.sample].cycles,
                "slab_rows": config["slab_rows"],
            }
        ),
        code=code_digest("attributes"),
    shell:
        "holocat attributes gather results/{wildcards.sample}/labels.ome.zarr {output.table} "
        "{input.parts} --params {params.p} >{log} 2>&1"
