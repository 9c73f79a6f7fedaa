# Stage 8: finite-element simulations (today: single-particle Li diffusion + stress at fem.c_rate).


rule fem_single_particle:
    output:
        table="results/fem/single_particle.parquet",
        fig=report(
            "results/fem/single_particle.png",
            caption="../report/fem.rst",
            category="FEM",
        ),
    log:
        "logs/fem/single_particle.log",
    benchmark:
        "results/benchmarks/fem/single_particle.tsv"
    conda:
        f"{ENVS}/fem.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=RES["runtime_min"],
    params:
        p=lambda w: as_json(config["fem"]),
        code=code_digest("fem"),
    shell:
        "holocat fem single-particle results/fem --params {params.p} >{log} 2>&1"
