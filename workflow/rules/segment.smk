# Stage 5: particle segmentation over z-slabs with a halo, then stitching into one label image.
# segment.method star (default) runs the tri-planar star-convex model: the shipped model
# (segment.model: default), a model folder, or the one rule train_model trains when
# segment.train.enabled is true.

TRAINED_MODEL = "results/model/holocat-star2d"


def segment_model(wildcards):
    """The trained model folder when the config asks for training, else nothing."""
    star = config["segment"]["method"] == "star"
    return [TRAINED_MODEL] if star and config["segment"]["train"]["enabled"] else []


def model_option(wildcards, input):
    return f"--model {input.model}" if input.model else ""


def segment_params(wildcards):
    """segment's own keys (not the training recipe, which only the model folder depends on)."""
    return as_json({k: v for k, v in config["segment"].items() if k != "train"})


def model_digest(wildcards):
    """Checksum of the weights segment runs with when they are not a workflow output (rerun trigger)."""
    seg = config["segment"]
    if seg["method"] != "star" or seg["train"]["enabled"]:
        return ""
    from holocat._resources import resource_path

    folder = (
        resource_path("models/holocat-star2d", must_exist=False)
        if seg["model"] == "default"
        else Path(seg["model"])
    )
    weights = folder / "weights.pt"
    return (
        hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        if weights.exists()
        else "missing"
    )


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
