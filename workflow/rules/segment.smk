# Stage 5: particle segmentation over z-slabs with a halo, then stitching into one label image.
# segment.method star (default) runs the tri-planar star-convex model: the shipped model
# (segment.model: default), a model folder, or the one rule train_model trains when
# segment.train.enabled is true.


rule train_model:
    output:
        directory(TRAINED_MODEL),
    log:
        "logs/train_model.log",
    benchmark:
        "results/benchmarks/train_model.tsv"
    conda:
        f"{ENVS}/segment.yaml"
    threads: 2
    resources:
        mem_mb=RES["mem_mb"],
        runtime=240,
        gpu=0,
    params:
        p=lambda w: as_json(
            {
                "train": config["segment"]["train"],
                "device": config["segment"]["device"],
            }
        ),
        code=code_digest("segment"),
    shell:
        "holocat train {output} --params {params.p} >{log} 2>&1"


rule segment_init:
    input:
        "results/{sample}/volume.ome.zarr.manifest.json",
    output:
        "results/{sample}/segment.slabs.zarr.init.json",
    log:
        "logs/segment_init/{sample}.log",
    benchmark:
        "results/benchmarks/segment_init/{sample}.tsv"
    conda:
        f"{ENVS}/segment.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=10,
    params:
        p=lambda w: as_json(
            {k: v for k, v in config["segment"].items() if k != "train"}
            | {"slab_rows": config["slab_rows"]}
        ),
        code=code_digest("segment"),
    shell:
        "holocat segment init results/{wildcards.sample}/volume.ome.zarr "
        "results/{wildcards.sample}/segment.slabs.zarr --params {params.p} >{log} 2>&1"


rule segment:
    input:
        volume="results/{sample}/volume.ome.zarr.manifest.json",
        init="results/{sample}/segment.slabs.zarr.init.json",
        model=segment_model,
    output:
        "results/{sample}/segment.slabs.zarr.parts/{slab}.json",
    log:
        "logs/segment/{sample}/{slab}.log",
    benchmark:
        "results/benchmarks/segment/{sample}/{slab}.tsv"
    conda:
        f"{ENVS}/segment.yaml"
    threads: 2
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
        gpu=0,
    params:
        p=segment_params,
        model=model_option,
        weights=model_digest,
        code=code_digest("segment"),
    shell:
        "holocat segment slab results/{wildcards.sample}/volume.ome.zarr "
        "results/{wildcards.sample}/segment.slabs.zarr --slab {wildcards.slab} {params.model} "
        "--params {params.p} --out {output} >{log} 2>&1"


rule segment_stitch:
    input:
        init="results/{sample}/segment.slabs.zarr.init.json",
        parts=slab_parts("segment"),
    output:
        manifest="results/{sample}/labels.ome.zarr.manifest.json",
        index="results/{sample}/labels.index.parquet",
    log:
        "logs/segment_stitch/{sample}.log",
    benchmark:
        "results/benchmarks/segment_stitch/{sample}.tsv"
    conda:
        f"{ENVS}/segment.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    shell:
        "holocat segment stitch results/{wildcards.sample}/segment.slabs.zarr "
        "results/{wildcards.sample}/labels.ome.zarr {input.parts} --index {output.index} >{log} 2>&1"
