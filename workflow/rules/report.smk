# Stage 9: validation against the simulator's ground truth (synthetic samples) and the run summary.


rule truth_attributes:
    input:
        "results/{sample}/truth.manifest.json",
    output:
        "results/{sample}/truth/attributes.parquet",
    log:
        "logs/truth_attributes/{sample}.log",
    benchmark:
        "results/benchmarks/truth_attributes/{sample}.tsv"
    conda:
        f"{ENVS}/core.yaml"
    threads: 2
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    params:
        p=lambda w: as_json(config["attributes"]),
        code=code_digest("attributes"),
    shell:
        "holocat attributes truth results/{wildcards.sample}/truth {output} --params {params.p} "
        "--workers {threads} >{log} 2>&1"


rule validate:
    input:
        truth="results/{sample}/truth.manifest.json",
        truth_attributes="results/{sample}/truth/attributes.parquet",
        volume="results/{sample}/volume.ome.zarr.manifest.json",
        labels="results/{sample}/labels.ome.zarr.manifest.json",
        attributes="results/{sample}/attributes.parquet",
    output:
        "results/{sample}/validation.json",
    log:
        "logs/validate/{sample}.log",
    benchmark:
        "results/benchmarks/validate/{sample}.tsv"
    conda:
        f"{ENVS}/core.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    params:
        code=code_digest("segment", "attributes"),
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
        jobs="results/report/jobs.csv",
    log:
        "logs/report/summary.log",
    benchmark:
        "results/benchmarks/report/summary.tsv"
    conda:
        f"{ENVS}/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        p=lambda w: as_json(
            {
                "title": config["report"]["title"],
                "samples": sorted(SAMPLES),
                "config": config,
            }
        ),
    shell:
        "holocat report results results/report --logs logs --params {params.p} >{log} 2>&1"
