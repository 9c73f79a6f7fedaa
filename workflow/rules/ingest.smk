# Stage 2: ingest / flat-field: validate the raw scan (metadata, shapes, flats, darks) and derive the
# plane-wave-equivalent geometry of every distance. Flat/dark correction itself runs per angle chunk
# inside the phase jobs, on the frames they read.


rule ingest:
    input:
        raw_scan,
    output:
        "results/{sample}/ingest.json",
    log:
        "logs/ingest/{sample}.log",
    benchmark:
        "results/benchmarks/ingest/{sample}.tsv"
    conda:
        f"{ENVS}/tomo.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    params:
        raw=raw_scan_path,
        p=lambda w: as_json(config["ingest"]),
        code=code_digest("tomo"),
    shell:
        "holocat ingest {params.raw} {output} --params {params.p} >{log} 2>&1"
