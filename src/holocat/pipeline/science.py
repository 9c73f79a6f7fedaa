"""Stage drivers: analysis (per sample, comparison), FEM, validation against ground truth, report."""

from __future__ import annotations

import html
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from holocat.io import atomic_path, open_ome_zarr, provenance, read_table, write_json_atomic

__all__ = [
    "analysis_sample",
    "analysis_compare",
    "fem_single_particle",
    "validate_sample",
    "report",
]

log = logging.getLogger(__name__)

FARADAY = 96485.33212


def _savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip("."))
    plt.close(fig)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        df.to_csv(tmp)


def _predictors(params: dict):
    preds = params.get("predictors", "paper")
    if preds == "paper":
        from holocat.analysis import PAPER_PREDICTORS

        return list(PAPER_PREDICTORS)
    return list(preds)


def _analysis_table(table: pd.DataFrame, params: dict) -> pd.DataFrame:
    if params.get("exclude_border", True) and "touches_border" in table:
        table = table[~table["touches_border"].astype(bool)]
    return table


def analysis_sample(attributes: str | Path, out_dir: str | Path, params: dict) -> None:
    """Correlations with the target and random-forest/SHAP importance for one sample, with figures."""
    from holocat.analysis import (
        correlation_matrix,
        correlations,
        importance,
        plot_correlation_matrix,
        plot_importance,
    )

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    table, _ = read_table(attributes)
    target = params["target"]
    features = [f for f in _predictors(params) if f in table.columns and f != target]
    table = _analysis_table(table, params)
    corr = correlations(table, target=target, features=features)
    _write_csv(corr, out_dir / "correlations.csv")
    _savefig(
        plot_correlation_matrix(correlation_matrix(table, features=[*features, target])),
        out_dir / "correlation_matrix.png",
    )
    imp = importance(
        table,
        target=target,
        features=features,
        seeds=range(int(params["seeds"])),
        n_subsamples=int(params["n_subsamples"]),
        subsample_size=int(params["subsample_size"]),
        criterion=params["criterion"],
    )
    _write_csv(imp, out_dir / "importance.csv")
    write_json_atomic(
        out_dir / "importance.json",
        {
            "attrs": json.loads(json.dumps(imp.attrs, default=_json_default)),
            "provenance": provenance("analysis", params, inputs=[str(attributes)]),
        },
    )
    _savefig(
        plot_importance(imp, title=f"{Path(attributes).parent.name}: mean |SHAP| for {target}"),
        out_dir / "importance.png",
    )
    log.info("analysis of %d particles in %.1f s", len(table), time.perf_counter() - t0)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def analysis_compare(out_dir: str | Path, tables: list[str], params: dict) -> None:
    """Fig. S11-style comparison of r(attribute, target) between samples, and attribute distributions."""
    from holocat.analysis import compare_samples, plot_comparison
    from holocat.attributes import plot_distributions

    out_dir = Path(out_dir)
    loaded = {}
    for path in tables:
        df, _ = read_table(path)
        name = str(df["sample"].iloc[0]) if "sample" in df and len(df) else Path(path).parent.name
        loaded[name] = df
    order = sorted(
        loaded, key=lambda n: int(loaded[n]["cycles"].iloc[0]) if "cycles" in loaded[n] else 0
    )
    ordered = {n: _analysis_table(loaded[n], params) for n in order}
    pair = {
        n: ordered[n] for n in (order[0], order[-1])
    }  # the comparison contrasts two cycle numbers
    if len(order) > 2:
        log.info("comparing the lowest- and highest-cycle samples: %s vs %s", order[0], order[-1])
    cmp = compare_samples(
        pair,
        target=params["target"],
        n_subsamples=int(params["n_subsamples"]),
        subsample_size=int(params["subsample_size"]),
    )
    _write_csv(cmp, out_dir / "comparison.csv")
    _savefig(plot_comparison(cmp), out_dir / "comparison.png")
    _savefig(plot_distributions(ordered), out_dir / "distributions.png")


def fem_single_particle(out_dir: str | Path, params: dict) -> None:
    """Single-particle diffusion + stress for every configured radius at ``c_rate`` (one charge half cycle).

    The surface flux follows from the C-rate and the particle's own capacity:
    Δc = capacity × 3.6 C/mAh × ρ / F and j = c_rate × Δc × R / (3 × 3600 s), for t_end = 3600 s / c_rate.
    """
    from holocat.fem import plot_single_particle, single_particle
    from holocat.io import write_table

    out_dir = Path(out_dir)
    dc = params["capacity_mAh_g"] * 3.6 * params["density_g_cm3"] * 1e6 / FARADAY  # mol m^-3
    t_end = 3600.0 / params["c_rate"]
    frames = []
    for radius in params["radii_um"]:
        flux = params["c_rate"] * dc * radius * 1e-6 / (3 * 3600.0)
        df = single_particle(
            radius_um=radius,
            diffusivity_m2_s=params["diffusivity_m2_s"],
            flux_mol_m2_s=flux,
            t_end_s=t_end,
            n_out=50,
            youngs_modulus_GPa=params["youngs_modulus_GPa"],
            poisson_ratio=params["poisson_ratio"],
            partial_molar_volume_m3_mol=params["partial_molar_volume_m3_mol"],
            n_elements=int(params["n_elements"]),
        )
        material = dict(df.attrs)
        df = df.assign(radius_um=radius, flux_mol_m2_s=flux)
        frames.append(df)
        log.info(
            "R = %.1f um: flux %.3g mol m^-2 s^-1, max |sigma_t| %.0f MPa",
            radius,
            flux,
            float(np.abs(df["sigma_t_MPa"]).max()),
        )
    table = pd.concat(frames, ignore_index=True)
    table.attrs = {}
    meta = {
        "material": material,
        "delta_c_mol_m3": dc,
        "t_end_s": t_end,
        "provenance": provenance("fem_single_particle", params),
    }
    write_table(
        table,
        out_dir / "single_particle.parquet",
        metadata=json.loads(json.dumps(meta, default=_json_default)),
    )
    _savefig(plot_single_particle(frames[len(frames) // 2]), out_dir / "single_particle.png")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def validate_sample(sample_dir: str | Path, out: str | Path) -> dict:
    """Compare a synthetic sample's results with the simulator's ground truth.

    - volume: Pearson r between the reconstructed δ and the true δ inside the sample (pillar),
      computed slab by slab;
    - labels: instance matching (TP, FP, FN, accuracy = TP/(TP+FP+FN), F1, PQ) at IoU 0.3/0.5/0.7;
    - attributes: particles matched one-to-one at IoU ≥ 0.5, Pearson r per attribute (Damage
      against the planted crack fraction, the truth table's ``DamageVoxels``).
    """
    from holocat.segment import evaluate, matched_pairs

    sample_dir = Path(sample_dir)
    truth = sample_dir / "truth"
    vol = open_ome_zarr(sample_dir / "volume.ome.zarr")
    delta = open_ome_zarr(truth / "delta.ome.zarr")
    material = open_ome_zarr(truth / "material.ome.zarr")
    if tuple(vol.array.shape) != tuple(delta.array.shape):
        raise ValueError(
            f"volume {vol.array.shape} and ground truth {delta.array.shape} differ in shape; "
            "validation needs reconstruct.roi = auto"
        )
    sums = np.zeros(6)
    for z0 in range(0, vol.array.shape[0], 32):
        v = np.asarray(vol.array[z0 : z0 + 32], dtype=np.float64)
        t = np.asarray(delta.array[z0 : z0 + 32], dtype=np.float64)
        m = np.asarray(material.array[z0 : z0 + 32]) > 0
        v, t = v[m], t[m]
        sums += [v.size, v.sum(), t.sum(), (v * v).sum(), (t * t).sum(), (v * t).sum()]
    n, sv, st, svv, stt, svt = sums
    r_volume = (svt - sv * st / n) / math.sqrt((svv - sv**2 / n) * (stt - st**2 / n))
    labels = np.asarray(open_ome_zarr(sample_dir / "labels.ome.zarr").array[:])
    gt = np.asarray(open_ome_zarr(truth / "labels.ome.zarr").array[:])
    seg = evaluate(gt, labels, thresholds=(0.3, 0.5, 0.7))
    pairs = matched_pairs(gt, labels, thresh=0.5)
    attrs, _ = read_table(sample_dir / "attributes.parquet")
    tattrs, _ = read_table(truth / "attributes.parquet")
    a = attrs.set_index("label").loc[pairs[:, 1]]
    t = tattrs.set_index("label").loc[pairs[:, 0]]
    numeric = [
        c
        for c in t.columns
        if c in a.columns
        and pd.api.types.is_numeric_dtype(t[c])
        and not pd.api.types.is_bool_dtype(t[c])
    ]
    r_attr = {c: _pearson(a[c].to_numpy(), t[c].to_numpy()) for c in numeric}
    # The truth table's DamageVoxels is the planted crack fraction, exact on the simulator's
    # labels; its Damage is the grey-value estimator on the sharp δ map. Score the measured
    # Damage against the planted truth.
    if "Damage" in a.columns and "DamageVoxels" in t.columns:
        r_attr["Damage"] = _pearson(a["Damage"].to_numpy(), t["DamageVoxels"].to_numpy())
    result = {
        "volume_pearson_r": r_volume,
        "segmentation": json.loads(seg.to_json(orient="index")),
        "n_true": int(gt.max()),
        "n_pred": int(labels.max()),
        "n_matched_iou50": int(len(pairs)),
        "attribute_pearson_r": r_attr,
        "provenance": provenance("validate", {}, inputs=[str(sample_dir)]),
    }
    write_json_atomic(Path(out), json.loads(json.dumps(result, default=_json_default)))
    log.info(
        "validation %s: volume r %.3f, AP50 %s",
        sample_dir.name,
        r_volume,
        seg.loc[0.5].to_dict() if 0.5 in seg.index else seg,
    )
    return result


def report(
    results_dir: str | Path,
    out_dir: str | Path,
    params: dict,
    *,
    jobs: pd.DataFrame | None = None,
) -> None:
    """A self-contained HTML summary (figures inlined) and a CSV of key numbers per sample.

    ``jobs`` (:func:`holocat.pipeline.jobs.read_job_table`), when given, adds a "Jobs" section
    (where each job ran, its SLURM job id and node) and ``jobs.csv``.
    """
    import base64

    results_dir = Path(results_dir)
    out_dir = Path(out_dir)
    rows = []
    body = [f"<h1>{html.escape(params['title'])}</h1>"]
    for name in params["samples"]:
        table, meta = read_table(results_dir / name / "attributes.parquet")
        inner = table[~table["touches_border"]] if "touches_border" in table else table
        row = {
            "sample": name,
            "cycles": int(table["cycles"].iloc[0]),
            "n_particles": len(table),
            "n_interior": len(inner),
            "mean_damage": float(inner["Damage"].mean()),
            "mean_volume_um3": float(inner["Volume"].mean()),
        }
        val = results_dir / name / "validation.json"
        if val.exists():
            v = json.loads(val.read_text())
            row["volume_pearson_r"] = v["volume_pearson_r"]
            for thr, rec in v["segmentation"].items():
                row[f"AP@{float(thr):.1f}"] = rec["accuracy"]
            for col in ("Volume", "Damage", "EDensity", "Sphericity"):
                if col in v["attribute_pearson_r"]:
                    row[f"r_{col}"] = v["attribute_pearson_r"][col]
        imp = pd.read_csv(results_dir / name / "analysis" / "importance.csv", index_col=0)
        row["top_driver"] = str(imp.sort_values("rank").index[0])
        rows.append(row)
    summary = pd.DataFrame(rows)
    body.append(
        "<h2>Summary</h2>" + summary.to_html(index=False, float_format=lambda x: f"{x:.4g}")
    )
    figures = (
        sorted(results_dir.glob("*/analysis/*.png"))
        + sorted(results_dir.glob("comparison/*.png"))
        + sorted(results_dir.glob("fem/*.png"))
    )
    for fig in figures:
        b64 = base64.b64encode(fig.read_bytes()).decode()
        body.append(
            f"<h3>{html.escape(str(fig.relative_to(results_dir)))}</h3>"
            f"<img src='data:image/png;base64,{b64}' style='max-width:100%'>"
        )
    if jobs is not None:
        n_slurm = int((jobs["slurm_job_id"] != "").sum())
        body.append(
            f"<h2>Jobs</h2><p>{len(jobs)} jobs, {n_slurm} of them SLURM jobs "
            f"({jobs.loc[jobs['slurm_job_id'] != '', 'slurm_job_id'].nunique()} distinct ids)"
            "</p>" + jobs.to_html(index=False)
        )
    prov = provenance("report", {k: v for k, v in params.items() if k != "config"})
    body.append(
        "<h2>Configuration</h2><pre>"
        + html.escape(json.dumps(params.get("config", {}), indent=2))
        + "</pre>"
    )
    body.append(
        "<h2>Provenance</h2><pre>" + html.escape(json.dumps(prov, indent=2, default=str)) + "</pre>"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    if jobs is not None:
        with atomic_path(out_dir / "jobs.csv") as tmp:
            jobs.to_csv(tmp, index=False)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>holocat report</title></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )
    with atomic_path(out_dir / "summary.html") as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
