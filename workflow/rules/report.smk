# Stage 9: validation against the simulator's ground truth (synthetic samples) and the run summary.


rule truth_attributes:
    input:
        "results/{sample}/truth.manifest.json",
    output:
        "results/{sample}/truth/attributes.parquet",
    params:
        p=lambda w: as_json(config["attributes"]),
        code=code_digest("attributes"),
    log:
        "logs/truth_attributes/{sample}.log",
    benchmark:
        "results/benchmarks/truth_attributes/{sample}.tsv"
    threads: 2
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    conda:
        f"{ENVS}/core.yaml"
    shell:
        "holocat attributes truth results/{wildcards.sample}/truth {output} --params {params.p} >{log} 2>&1"


rule validate:
    input:
        truth="results/{sample}/truth.manifest.json",
        truth_attributes="results/{sample}/truth/attributes.parquet",
        volume="results/{sample}/volume.ome.zarr.manifest.json",
        labels="results/{sample}/labels.ome.zarr.manifest.json",
        attributes="results/{sample}/attributes.parquet",
    output:
        "results/{sample}/validation.json",
    params:
        code=code_digest("segment", "attributes"),
    log:
        "logs/validate/{sample}.log",
    benchmark:
        "results/benchmarks/validate/{sample}.tsv"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    conda:
        f"{ENVS}/core.yaml"
    shell:
        "holocat validate results/{wildcards.sample} {output} >{log} 2>&1"


rule report:
    input:
        [f for name in SAMPLES for f in per_sample_outputs(name)],
        "results/fem/single_particle.parquet",
        ["results/comparison/comparison.csv"] if len(SAMPLES) >= 2 else [],
    output:
        html=report(
            "results/report/summary.html",
            caption="../report/summary.rst",
            category="Summary",
        ),
        table=report(
            "results/report/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
    params:
        p=lambda w: as_json(
            {"title": config["report"]["title"], "samples": sorted(SAMPLES), "config": config}
        ),
    log:
        "logs/report/summary.log",
    benchmark:
        "results/benchmarks/report/summary.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        f"{ENVS}/core.yaml"
    shell:
        "holocat report results results/report --params {params.p} >{log} 2>&1"
