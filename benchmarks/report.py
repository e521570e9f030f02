"""Tables and plots of the benchmark results: benchmarks/results/*.json -> RESULTS.md and plots/*.png.

Reads every JSON file the benchmarks write (bench_banking77, bench_few_shot, bench_cifar10 (real or random teacher),
bench_train_step, bench_teacher_pass, bench_coordinates; whichever exist) and writes one markdown file with a table per
benchmark, the hardware, versions and command each comes from, and the plots (matplotlib's object API, no pyplot):
- Banking77 / CIFAR-10: arm, test accuracy mean ± sample std, seeds, training time, time per step, peak memory; the
  teacher's probe as a row and the one-off teacher pass apart; a CIFAR-10 run with a random teacher is labelled cost
  only and its accuracies are left out;
- few-shot: accuracy per arm and number of labels per intent;
- cost scaling: step time and peak memory of online KD as the teacher grows, against TCS and cross-entropy.

Usage: python benchmarks/report.py [--results benchmarks/results] [--output benchmarks/results/RESULTS.md]
(seconds; no torch needed). The plots go to plots/ next to the output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.figure import Figure

RESULTS = Path(__file__).resolve().parent / "results"


def load_results(folder: Path) -> dict[str, list[tuple[str, dict]]]:
    """The result files of ``folder`` by benchmark (the file's `benchmark` key, else its name)."""
    found: dict[str, list[tuple[str, dict]]] = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        kind = data.get("benchmark") or path.stem.removeprefix("bench_")
        found.setdefault(kind, []).append((path.name, data))
    return found


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def num(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "–" if value is None else f"{value:,.{digits}f}{unit}"


def count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def runs_of(summary: dict) -> int:
    """The number of runs (seeds) behind a summary (files of earlier versions list the seeds only)."""
    return summary.get("n", len(summary.get("seeds", [])))


def accuracy_cell(summary: dict) -> str:
    mean, std, n = summary["test_accuracy_mean"], summary["test_accuracy_std"], runs_of(summary)
    return f"{100 * mean:.2f} % ± {100 * std:.2f}" if n > 1 else f"{100 * mean:.2f} %"


def provenance(name: str, data: dict) -> str:
    """The hardware, versions and command a result file comes from."""
    env = data.get("environment", {})
    hardware = f"{env.get('cpu_model', env.get('machine', '?'))}, {env.get('cpu_count', env.get('cpus', '?'))} CPUs"
    if env.get("cuda"):
        hardware += f", {env['cuda']}"
    versions = ", ".join(f"{key} {env[key]}" for key in ("torch", "transformers", "datasets", "numpy") if key in env)
    load = env.get("load_average_before", env.get("load_average"))
    lines = [f"Source: `benchmarks/results/{name}`; hardware: {hardware}, {env.get('threads', '?')} torch threads"]
    lines[-1] += f"; {versions}" if versions else ""
    if load:
        lines[-1] += f"; load average at start {load[0]}"
    if data.get("command"):
        lines.append(f"Command: `{data['command']}`")
    if len(data.get("invocations", [])) > 1:
        lines.append(f"(merged from {len(data['invocations'])} invocations, see `invocations` in the file)")
    if data.get("note"):
        lines.append(f"Note: {data['note']}")
    return "  \n".join(lines)


def arm_table(data: dict, accuracies: bool = True) -> list[str]:
    """The arm table of a bench_banking77 / bench_cifar10 result."""
    labels = data.get("arms", {})
    header = "| arm | test accuracy | seeds | train time | time / step | step median | peak RSS | RSS growth | k |"
    rows = [header, "|---|---|---|---|---|---|---|---|---|"]
    if "teacher_probe_accuracy" in data and accuracies:
        rows.append(f"| teacher linear probe | {pct(data['teacher_probe_accuracy'])} | – | – | – | – | – | – | – |")
    for arm, s in data.get("summary", {}).items():
        timed = s.get("timed_runs", 0) > 0
        accuracy = accuracy_cell(s) if accuracies else "(cost only)"
        per_step = s.get("seconds_per_step_mean")
        per_step_ms = None if per_step is None else 1000 * per_step
        rows.append(
            f"| {labels.get(arm, arm)} | {accuracy} | {runs_of(s)} | "
            f"{num(s.get('train_runtime_s_mean'), 0, ' s') if timed else '–'} | "
            f"{num(per_step_ms, 0, ' ms')} | {num(s.get('step_median_ms'), 0, ' ms')} | "
            f"{num(s.get('peak_rss_mb'), 0, ' MiB')} | {num(s.get('peak_rss_growth_mb'), 0, ' MiB')} | "
            f"{s.get('active_coordinates') or '–'} |"
        )
    return rows


def teacher_pass_line(data: dict, what: str) -> str:
    timing = data.get("teacher_pass")
    if not timing:
        return ""
    cached = " (served from the cache)" if timing.get("served_from_cache") else " (cache bypassed)"
    return (
        f"One-off teacher pass over the {timing['examples']:,} training {what}{cached}: {timing['seconds']:.1f} s "
        f"({timing['examples_per_s']:.1f} {what}/s, batch {timing['batch_size']}); loading the teacher "
        f"{timing['load_s']:.1f} s. Not included in the training times above."
    )


def cost_figure(data: dict, title: str, path: Path, accuracies: bool = True) -> None:
    """Accuracy (unless cost only), time per step and peak RSS growth per arm."""
    summary = data.get("summary", {})
    arms = list(summary)
    panels = ["accuracy"] if accuracies else []
    for panel, key in (("step", "seconds_per_step_mean"), ("memory", "peak_rss_growth_mb")):
        if any(summary[a].get(key) is not None for a in arms):  # files of earlier versions have no costs
            panels.append(panel)
    if not panels:
        return
    figure = Figure(figsize=(4.2 * len(panels), 0.45 * len(arms) + 1.8), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    positions = range(len(arms))
    for axis, panel in zip(axes, panels, strict=True):
        if panel == "accuracy":
            means = [100 * summary[a]["test_accuracy_mean"] for a in arms]
            stds = [100 * summary[a]["test_accuracy_std"] for a in arms]
            axis.barh(positions, means, xerr=stds, color="tab:blue", capsize=3)
            if "teacher_probe_accuracy" in data:
                axis.axvline(
                    100 * data["teacher_probe_accuracy"], color="black", linestyle="--", label="teacher probe"
                )
                axis.legend(loc="lower right", fontsize="small")
            low = min(means) - 5
            axis.set_xlim(max(0.0, low), max(means + [100 * data.get("teacher_probe_accuracy", 0)]) + 2)
            axis.set_xlabel("test accuracy (%)")
        elif panel == "step":
            values = [1000 * (summary[a].get("seconds_per_step_mean") or 0) for a in arms]
            axis.barh(positions, values, color="tab:orange")
            axis.set_xlabel("time per step (ms)")
        else:
            values = [summary[a].get("peak_rss_growth_mb") or 0 for a in arms]
            axis.barh(positions, values, color="tab:green")
            axis.set_xlabel("peak RSS growth (MiB)")
    axes[0].set_yticks(list(positions), arms)
    axes[0].invert_yaxis()
    figure.suptitle(title)
    figure.savefig(path, dpi=110)


def banking77_section(name: str, data: dict, plots: Path) -> list[str]:
    s = data.get("settings", {})
    budget = f"{s['max_steps']} steps" if s.get("max_steps") else f"{s.get('epochs', '?'):g} epochs"
    plot = plots / "banking77.png"
    cost_figure(data, "Banking77", plot)
    return [
        "## Banking77 (all-MiniLM-L6-v2 teacher)" if s.get("teacher") == "all-MiniLM-L6-v2" else "## Banking77",
        "",
        f"Teacher {s.get('teacher', '?')}; student {s.get('student', '2-layer BERT')}; {budget}, batch "
        f"{s.get('batch_size', 32)}, {count(s.get('train_examples'))} training / {count(s.get('test_examples'))} test "
        "texts. Accuracy: mean ± sample std over seeds. Times and memory: mean over the runs timed by the current "
        "harness (each in its own process; peak RSS of that process and its growth once the data were loaded); "
        "runs merged from earlier files without these figures count for the accuracy only.",
        "",
        *arm_table(data),
        "",
        teacher_pass_line(data, "texts"),
        "",
        provenance(name, data),
        "",
        f"![Banking77](plots/{plot.name})",
        "",
    ]


def few_shot_section(name: str, data: dict, plots: Path) -> list[str]:
    """A table per setting (student and teacher) of accuracy per arm and labels per intent, the bar plot, and the
    accuracy-vs-steps curves of the curve seed's 10-label (else largest) runs."""
    s, summary, labels = data.get("settings", {}), data.get("summary", {}), data.get("arms", {})
    groups: dict[str, list[str]] = {}
    for key in summary:
        setting, shots = key.split("/")
        groups.setdefault(setting, []).append(shots)
    tables, all_labels = [], data.get("teacher_probe_accuracy_all_labels", {})
    students, teachers = s.get("students", {}), data.get("teachers", {})
    figure = Figure(figsize=(7.5, 4 * max(len(groups), 1)), layout="constrained")
    bar_axes = figure.subplots(max(len(groups), 1), 1, squeeze=False)[:, 0]
    for axis, (setting, shots) in zip(bar_axes, groups.items(), strict=False):
        shots = sorted(shots, key=int)
        arms = list(dict.fromkeys(arm for k in shots for arm in summary[f"{setting}/{k}"]))
        rows = ["| arm | " + " | ".join(f"{k} labels / intent" for k in shots) + " |", "|---|" + "---|" * len(shots)]
        for arm in arms:
            cells = [
                f"{accuracy_cell(group[arm])} (n={runs_of(group[arm])})"
                if arm in (group := summary[f"{setting}/{k}"])
                else "–"
                for k in shots
            ]
            rows.append(f"| {labels.get(arm, arm)} | " + " | ".join(cells) + " |")
        teacher = teachers.get(setting, {}).get("name", "?")
        probe = all_labels.get(setting) if isinstance(all_labels, dict) else None
        tables += [
            f"**{setting}**: student {students.get(setting, '?')}; teacher `{teacher}`"
            + (f" (its probe with every label: {pct(probe)})" if probe is not None else "")
            + ".",
            "",
            *rows,
            "",
        ]
        width = 0.8 / max(len(arms), 1)
        for i, arm in enumerate(arms):
            present = [
                (j, summary[f"{setting}/{k}"][arm]) for j, k in enumerate(shots) if arm in summary[f"{setting}/{k}"]
            ]
            xs = [j + (i - (len(arms) - 1) / 2) * width for j, _ in present]
            ys = [100 * one["test_accuracy_mean"] for _, one in present]
            axis.bar(xs, ys, width, yerr=[100 * one["test_accuracy_std"] for _, one in present], capsize=2, label=arm)
        axis.set_xticks(range(len(shots)), [f"{k} labels / intent" for k in shots])
        axis.set_ylabel("test accuracy (%)")
        axis.set_title(setting)
        axis.legend(fontsize="small")
    figure.suptitle("Banking77 few-shot")
    stem = Path(name).stem.removeprefix("bench_")  # few_shot; another file of this benchmark gets its own plots
    plot = plots / f"{stem}.png"
    figure.savefig(plot, dpi=110)

    curves = [run for run in data.get("runs", []) if run.get("curve")]
    curve_lines = []
    if curves:
        figure = Figure(figsize=(7.5, 4), layout="constrained")
        axis = figure.subplots()
        for run in curves:
            if run["shots"] == max(r["shots"] for r in curves if r["setting"] == run["setting"]):
                steps, accuracies = zip(*run["curve"], strict=True)
                label = f"{run['setting']}, {run['arm']}, {run['shots']} labels / intent"
                axis.plot(steps, [100 * a for a in accuracies], marker=".", label=label)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("test accuracy (%)")
        axis.legend(fontsize="small")
        figure.suptitle(f"Banking77 few-shot, accuracy against steps (seed {s.get('curve_seed', 0)})")
        curve_plot = plots / f"{stem}_curves.png"
        figure.savefig(curve_plot, dpi=110)
        curve_lines = [f"![Banking77 few-shot, accuracy against steps](plots/{curve_plot.name})", ""]
    return [
        "## Banking77 few-shot" + ("" if stem == "few_shot" else f" (`{name}`)"),
        "",
        f"Optimizer steps of batch {s.get('batch_size', 32)} in every arm: {s.get('max_steps', '?')} from scratch, "
        f"{s.get('pretrained_max_steps', '?')} for the pretrained students; the pool arm adds "
        f"{s.get('unlabeled_batch_size', '?')} unlabelled texts (of the other training texts) to every step. "
        f"Test accuracy on {count(s.get('test_examples'))} texts, mean ± sample std over seeds (n).",
        "",
        *tables,
        provenance(name, data),
        "",
        f"![Banking77 few-shot](plots/{plot.name})",
        "",
        *curve_lines,
    ]


def cifar10_diagnostics(data: dict) -> list[str]:
    """What says how much of the teacher a student takes in: the spectrum of the teacher features, and each arm's
    last logged coordinate loss (mean over its runs; predicting the mean scores the share of the variance its k
    coordinates keep)."""
    spectrum = data.get("teacher_spectrum", {})
    leading = spectrum.get("explained_by_leading", {})
    lines = []
    if leading:
        shares = ", ".join(f"{k}: {float(v):.1%}" for k, v in leading.items())
        needed = ", ".join(f"{share}: k = {k}" for share, k in spectrum.get("k_for_share", {}).items())
        lines += [
            f"Teacher features ({spectrum.get('feature_dim', '?')}-d): variance explained by the leading components "
            f"({shares}); components needed ({needed}).",
            "",
        ]
    losses: dict[str, list[float]] = {}
    for run in data.get("runs", []):
        if run.get("final_tcs_loss") is not None:
            losses.setdefault(run["arm"], []).append(float(run["final_tcs_loss"]))
    if losses:
        labels = data.get("arms", {})
        cells = "; ".join(f"{labels.get(arm, arm)}: {sum(values) / len(values):.3f}" for arm, values in losses.items())
        lines += [f"Last logged coordinate loss: {cells}.", ""]
    return lines


def cifar10_section(name: str, data: dict, plots: Path) -> list[str]:
    s = data.get("settings", {})
    cost_only = data.get("cost_only", s.get("cost_only", False))
    plot = plots / (Path(name).stem.removeprefix("bench_") + ".png")
    title = "CIFAR-10, random teacher: cost only" if cost_only else "CIFAR-10"
    cost_figure(data, title, plot, accuracies=not cost_only)
    budget = f"{s['max_steps']} steps" if s.get("max_steps") else f"{s.get('epochs', '?'):g} epochs"
    heading = f"## CIFAR-10, {s.get('teacher', '?')}" + (
        " — COST ONLY (random teacher: its accuracies mean nothing and are not shown)" if cost_only else ""
    )
    return [
        heading,
        "",
        f"Student {s.get('student', '?')}; {budget}, batch {s.get('batch_size', '?')}, "
        f"{count(s.get('train_examples'))} training / {count(s.get('test_examples'))} test images. Times and memory "
        "as for Banking77.",
        "",
        *arm_table(data, accuracies=not cost_only),
        "",
        *([] if cost_only else cifar10_diagnostics(data)),
        teacher_pass_line(data, "images"),
        "",
        provenance(name, data),
        "",
        f"![{title}](plots/{plot.name})",
        "",
    ]


def gap_closed(ce: float | None, tcs: float | None, probe: float | None) -> float | None:
    """The share of the gap from the cross-entropy student to the teacher's probe that TCS closes (issue 11's text
    goal: >= 50 % for the 2-layer students); negative when TCS is below cross-entropy, None when it is undefined."""
    if ce is None or tcs is None or probe is None or probe <= ce:
        return None
    return (tcs - ce) / (probe - ce)


def text_teachers_section(name: str, data: dict, plots: Path) -> list[str]:
    """bench_text_teachers.py: the arm table (student: arm) and each model's parameters and CPU latency."""
    s = data.get("settings", {})
    plot = plots / (Path(name).stem.removeprefix("bench_") + ".png")
    cost_figure(data, "Banking77, all-mpnet-base-v2 teacher", plot)
    budget = f"{s['max_steps']} steps" if s.get("max_steps") else f"{s.get('epochs', '?'):g} epochs"
    costs = data.get("inference", {})
    teacher = costs.get("teacher", {})
    probe = data.get("teacher_probe_accuracy")
    rows = [
        "| model | parameters | latency, batch 1 | latency, batch 64 | TCS accuracy / teacher probe "
        "| gap from cross-entropy to the probe closed by TCS |"
    ]
    rows.append("|---|---|---|---|---|---|")
    for model, cost in costs.items():
        if not isinstance(cost, dict) or "latency" not in cost:
            continue
        tcs = data.get("summary", {}).get(f"{model}:tcs", {}).get("test_accuracy_mean")
        ce = data.get("summary", {}).get(f"{model}:ce", {}).get("test_accuracy_mean")
        kept = "–" if model == "teacher" or tcs is None or not probe else f"{tcs / probe:.0%}"
        closed = gap_closed(ce, tcs, probe) if model != "teacher" else None
        closed_cell = "–" if closed is None else f"{closed:.0%}"
        name_cell = f"teacher ({s.get('teacher', '?')})" if model == "teacher" else model
        rows.append(
            f"| {name_cell} | {cost['parameters'] / 1e6:.1f} M | {num(cost['latency']['1']['median_ms'], 1, ' ms')} | "
            f"{num(cost['latency']['64']['median_ms'], 0, ' ms')} | {kept} | {closed_cell} |"
        )
    if teacher:
        rows.append("")
        rows.append(
            f"Latency: median of {teacher['latency']['1']['repeats']} CPU forwards on Banking77 test texts "
            f"({teacher['threads']} threads, load average {teacher['load_average']}); students truncate to "
            f"{costs.get('student_max_length', '?')} tokens, the teacher to {teacher.get('max_length', '?')}."
        )
    return [
        "## Banking77 with a big teacher (all-mpnet-base-v2) into small students",
        "",
        f"Students: {'; '.join(f'`{k}` {v}' for k, v in s.get('students', {}).items())}; {budget}, batch "
        f"{s.get('batch_size', '?')}, {count(s.get('train_examples'))} training / {count(s.get('test_examples'))} "
        "test texts. Arms with fewer runs than seeds show their n.",
        "",
        *arm_table(data),
        "",
        *rows,
        "",
        teacher_pass_line(data, "texts"),
        "",
        provenance(name, data),
        "",
        f"![Banking77, big teacher](plots/{plot.name})",
        "",
    ]


def efficientnet_probe_section(name: str, data: dict, plots: Path) -> list[str]:
    """offline_teachers.py --probe: the linear probe of both EfficientNet-Lite0 conversions and of a random network."""
    rows = ["| network | linear probe accuracy |", "|---|---|"]
    for key, value in data.items():
        if isinstance(value, dict) and "accuracy" in value:
            rows.append(f"| {key} | {pct(value['accuracy'])} |")
    return [
        "## EfficientNet-Lite0 (ImageNet-1k supervised) converted from its wheel: linear probe on CIFAR-10",
        "",
        f"Logistic regression on the 1280-d features of {count(data.get('train_examples'))} training images, tested "
        f"on {count(data.get('test_examples'))} test images (seed-0 subsets).",
        "",
        *rows,
        "",
        provenance(name, data),
        "",
    ]


def train_step_section(name: str, data: dict, plots: Path) -> list[str]:
    s, results = data.get("settings", {}), data.get("results", {})
    ce = results.get("ce", {}).get("step_ms")
    rows = [
        "| arm | teacher params (M) | step mean (ms) | step median (ms) | vs cross-entropy | peak RSS growth (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    kd = []
    for arm, r in results.items():
        params = r["runs"][0].get("teacher_params_m") if r.get("runs") else None
        if arm.startswith("kd-") and params is not None:
            kd.append((params, r))
        label = {"ce": "cross-entropy", "tcs": "TCS (no teacher)"}.get(arm, f"online feature KD, {arm[3:]} teacher")
        ratio = f"{r['step_ms'] / ce:.2f}" if ce else "–"
        rows.append(
            f"| {label} | {num(params, 1)} | {r['step_ms']} | {r['step_median_ms']} | {ratio} | "
            f"{r['peak_rss_delta_mb']} |"
        )
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    step_axis, memory_axis = figure.subplots(1, 2)
    for axis, key, ylabel in ((step_axis, "step_ms", "step time (ms)"), (memory_axis, "peak_rss_delta_mb", "MiB")):
        if kd:
            axis.plot([p for p, _ in kd], [r[key] for _, r in kd], "o-", label="online feature KD")
        for arm, style in (("tcs", "-"), ("ce", ":")):
            if arm in results:
                axis.axhline(results[arm][key], linestyle=style, color="black", label=arm.upper())
        axis.set_xlabel("teacher parameters (M)")
        axis.set_ylabel(ylabel)
        axis.set_ylim(bottom=0)
        axis.legend(fontsize="small")
    step_axis.set_title("training step time")
    memory_axis.set_title("peak RSS growth")
    plot = plots / "cost_scaling.png"
    figure.savefig(plot, dpi=110)
    return [
        "## Cost scaling: TCS vs online KD as the teacher grows",
        "",
        f"Student ViT-Ti/16 shape (random init), {s.get('image_size', '?')} px, batch {s.get('batch_size', '?')}, "
        f"{s.get('max_steps', 0) - s.get('warmup', 0)} timed steps after {s.get('warmup', '?')} warm-up, median of "
        f"{s.get('repeats', '?')} runs, each in its own process; teachers ViT-Ti/S/B /16 shapes.",
        "",
        *rows,
        "",
        provenance(name, data),
        "",
        f"![cost scaling](plots/{plot.name})",
        "",
    ]


def teacher_pass_section(name: str, data: dict, plots: Path) -> list[str]:
    rows = [
        "| teacher | examples | loop (ex/s) | precompute (ex/s) | overhead | cached call |",
        "|---|---|---|---|---|---|",
    ]
    for r in data.get("results", []):
        rows.append(
            f"| {r['teacher']} | {r['examples']:,} | {r['loop_examples_per_s']} | {r['precompute_examples_per_s']} | "
            f"{r['overhead_pct']} % | {r['cached_s']} s ({r['cached_pct_of_first']} % of the first) |"
        )
    return ["## Teacher pass overhead", "", *rows, "", provenance(name, data), ""]


def coordinates_section(name: str, data: dict, plots: Path) -> list[str]:
    rows = ["| examples | feature dim | fit time | peak RSS | peak traced memory |", "|---|---|---|---|---|"]
    for r in data.get("results", []):
        rows.append(
            f"| {r['num_examples']:,} | {r['feature_dim']} | {r['fit_s']} s | {r['peak_rss_mib']} MiB | "
            f"{r['peak_traced_mib']} MiB |"
        )
    return ["## Coordinate system fit", "", *rows, "", provenance(name, data), ""]


SECTIONS = {
    "banking77": banking77_section,
    "few_shot": few_shot_section,
    "cifar10": cifar10_section,
    "text_teachers": text_teachers_section,
    "efficientnet_probe": efficientnet_probe_section,
    "train_step": train_step_section,
    "teacher_pass": teacher_pass_section,
    "coordinates": coordinates_section,
}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(RESULTS), help="The folder of the result JSON files.")
    parser.add_argument("--output", default=None, help="Default: RESULTS.md in --results.")
    args = parser.parse_args(argv)
    results = Path(args.results)
    output = Path(args.output) if args.output else results / "RESULTS.md"
    plots = output.parent / "plots"
    plots.mkdir(parents=True, exist_ok=True)

    found = load_results(results)
    lines = [
        "# Benchmark results",
        "",
        "Written by `python benchmarks/report.py` from the JSON files in `benchmarks/results/`; every section names "
        "the machine, versions and command its numbers come from.",
        "",
    ]
    for kind, section in SECTIONS.items():
        for name, data in found.get(kind, []):
            lines += section(name, data, plots)
    unknown = sorted(set(found) - set(SECTIONS))
    if unknown:
        lines += [f"(Not reported: {', '.join(unknown)}.)", ""]
    output.write_text("\n".join(lines).rstrip() + "\n")
    print(f"Wrote {output} and {len(list(plots.glob('*.png')))} plots in {plots}")
    return output


if __name__ == "__main__":
    main()
