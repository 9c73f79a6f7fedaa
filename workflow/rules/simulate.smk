# Stage 1: synthetic electrode (ground truth) and its multi-distance holotomography scan.


rule simulate_electrode:
    output:
        "results/{sample}/truth.manifest.json",
    log:
        "logs/simulate_electrode/{sample}.log",
    benchmark:
        "results/benchmarks/simulate_electrode/{sample}.tsv"
    conda:
        f"{ENVS}/core.yaml"
    threads: 1
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    params:
        p=lambda w: as_json(
            {
                k: config["simulate"][k]
                for k in (
                    "shape",
                    "voxel_size_um",
                    "energy_keV",
                    "mean_diameter_um",
                    "diameter_cv",
                    "active_fraction",
                    "collector_thickness_um",
                )
            }
            | {"cycles": SAMPLES[w.sample].cycles, "seed": SAMPLES[w.sample].seed}
        ),
        code=code_digest("simulate"),
    shell:
        "holocat simulate electrode results/{wildcards.sample}/truth --params {params.p} >{log} 2>&1"


rule simulate_scan:
    input:
        "results/{sample}/truth.manifest.json",
    output:
        "results/{sample}/raw.zarr.manifest.json",
    log:
        "logs/simulate_scan/{sample}.log",
    benchmark:
        "results/benchmarks/simulate_scan/{sample}.tsv"
    conda:
        f"{ENVS}/tomo.yaml"
    threads: 2
    resources:
        mem_mb=RES["mem_mb"],
        runtime=RES["runtime_min"],
    params:
        p=lambda w: as_json(
            {
                k: config["simulate"][k]
                for k in (
                    "energy_keV",
                    "n_angles",
                    "focus_to_sample_m",
                    "focus_to_detector_m",
                    "detector_shape",
                    "photons_per_pixel",
                    "n_flats",
                    "n_darks",
                    "flat_drift",
                    "defective_pixel_fraction",
                    "cor_offset_px",
                )
            }
            | {"seed": SAMPLES[w.sample].seed, "angle_chunk": config["angle_chunk"]}
        ),
        code=code_digest("simulate"),
    shell:
        "holocat simulate scan results/{wildcards.sample}/truth results/{wildcards.sample}/raw.zarr "
        "--params {params.p} >{log} 2>&1"
