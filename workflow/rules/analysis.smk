# Stage 7: interpretable analysis of what drives particle damage, per sample and across samples.


rule analysis:
    input:
        "results/{sample}/attributes.parquet",
    output:
        importance="results/{sample}/analysis/importance.csv",
        correlations="results/{sample}/analysis/correlations.csv",
        fig_importance=report(
            "results/{sample}/analysis/importance.png",
            caption="../report/importance.rst",
            category="Analysis",
            subcategory="{sample}",
        ),
        fig_corr=report(
            "results/{sample}/analysis/correlation_matrix.png",
            caption="../report/correlation_matrix.rst",
            category="Analysis",
            subcategory="{sample}",
        ),
    log:
        "logs/analysis/{sample}.log",
    benchmark:
        "results/benchmarks/analysis/{sample}.tsv"
    conda:
        f"{ENVS}/analysis.yaml"
    threads: 2
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    params:
        p=lambda w: as_json(config["analysis"]),
        code=code_digest("analysis"),
    shell:
        "holocat analysis sample {input} results/{wildcards.sample}/analysis --params {params.p} "
        ">{log} 2>&1"


rule analysis_compare:
    input:
        expand("results/{sample}/attributes.parquet", sample=sorted(SAMPLES)),
    output:
        table="results/comparison/comparison.csv",
        fig=report(
            "results/comparison/comparison.png",
            caption="../report/comparison.rst",
            category="Analysis",
            subcategory="10 vs 50 cycles",
        ),
        dist=report(
            "results/comparison/distributions.png",
            caption="../report/distributions.rst",
            category="Attributes",
        ),
    log:
        "logs/analysis_compare/all.log",
    benchmark:
        "results/benchmarks/analysis_compare/all.tsv"
    conda:
        f"{ENVS}/analysis.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    params:
        p=lambda w: as_json(config["analysis"]),
        code=code_digest("analysis", "attributes"),
    shell:
        "holocat analysis compare results/comparison {input} --params {params.p} >{log} 2>&1"
