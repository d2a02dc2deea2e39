#!/usr/bin/env python3
"""Zero-shot test accuracy of every task x head, and the before/after table of docs/RESULTS.md.

    python3 scripts/zero_shot_table.py run --bin target/release/bszo --out after.json
    python3 scripts/zero_shot_table.py run --bin /path/to/older/bszo --out before.json
    python3 scripts/zero_shot_table.py table before.json after.json

`run` evaluates SPLADE-tiny (masked head) and SmolLM2-135M (causal head) on each task's test split,
capped to the first MASKED_CAP / CAUSAL_CAP examples, with the same settings for any binary: the
sampled protocol (its test split is the task's test file; SNLI/MNLI: all of pool/dev.json) with one
training and one validation example, so that only the test split costs time. A binary with the
`zero-shot` subcommand is run with it; an older one (no such subcommand) with `finetune`, stopped as
soon as it has written its run folder's zero_shot.json (the base weights' metrics, written before
any training step). A task/head the binary has no prompt for is recorded as unsupported. Needs the
provisioned models (crates/zo-models/scripts/provision.sh) and the data folder (ZO_DATA_DIR,
./data, the repository's). Standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = ["sst2", "sst5", "trec", "rte", "cb", "snli", "mnli", "boolq", "copa", "wsc", "wic"]
NLI = ["rte", "cb", "snli", "mnli"]
MODELS = {"masked": "splade-tiny", "causal": "smollm2-135m"}
# Test examples per task (the first ones of the test split); None = all.
MASKED_CAP = None
CAUSAL_CAP = {"boolq": 50}
CAUSAL_CAP_DEFAULT = 100
MAX_LENGTH = 128
EVAL_BATCH = {"masked": 64, "causal": 16}


def cap(head, task):
    if head == "masked":
        return MASKED_CAP
    return CAUSAL_CAP.get(task, CAUSAL_CAP_DEFAULT)


def machine():
    model, avx512 = platform.processor() or "unknown", False
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                avx512 = "avx512f" in line.split()
    except (OSError, subprocess.CalledProcessError):
        pass
    return {"cpu": model, "avx512": avx512, "cores": os.cpu_count()}


def has_zero_shot(binary):
    r = subprocess.run([binary, "zero-shot", "--help"], capture_output=True, text=True)
    return r.returncode == 0


def takes_set(binary):
    """Whether the binary spells settings as `--set KEY=VALUE` (older ones had a flag each)."""
    r = subprocess.run([binary, "finetune", "--help"], capture_output=True, text=True)
    return "--set" in r.stdout


def settings(binary, pairs):
    """`pairs` of (key, old flag, value) as this binary spells them."""
    if takes_set(binary):
        return [x for key, _, value in pairs for x in ("--set", f"{key}={value}")]
    return [x for _, flag, value in pairs for x in (flag, value.replace("few_shot", "few-shot"))]


def common_flags(binary, head, task):
    pairs = [
        ("model.kind", "--model-kind", head),
        ("task.protocol.kind", "--protocol", "sampled"),
        ("task.protocol.seed", "--data-seed", "0"),
        ("task.protocol.train", "--train-size", "1"),
        ("task.protocol.validation", "--validation-size", "1"),
        ("model.max_length", "--max-length", str(MAX_LENGTH)),
        ("task.eval_batch_size", "--eval-batch-size", str(EVAL_BATCH[head])),
    ]
    n = cap(head, task)
    if n is not None:
        pairs.append(("task.test_size", "--test-size", str(n)))
    return ["--model", MODELS[head], "--task", task, *settings(binary, pairs)]


def failure(stderr):
    """A failed run: `unsupported` when the binary has no prompt for the task and head."""
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    last = lines[-1] if lines else ""
    if "not supported" in last:
        return {"unsupported": True}
    return {"error": last}


def run_zero_shot(binary, head, task, nli, work):
    out = Path(work) / f"{task}-{head}-{nli or 'default'}.json"
    cmd = [binary, "zero-shot", *common_flags(binary, head, task), "--json", str(out)]
    if nli:
        cmd += settings(binary, [("task.nli_template", "--nli-template", nli)])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return failure(r.stderr)
    report = json.loads(out.read_text())
    return {"accuracy": report["test"]["score"], "test_size": report["test_size"]}


def run_finetune_until_zero_shot(binary, head, task, work):
    out = Path(work) / f"run-{task}-{head}"
    cmd = [
        binary, "finetune", *common_flags(binary, head, task), "--steps", "1",
        *settings(binary, [("train.batch_size", "--batch-size", "1"),
                           ("train.eval_every", "--eval-every", "0")]),
        "--no-plots", "--no-progress", "--out", str(out), "--overwrite",
    ]
    zero = out / "zero_shot.json"
    with tempfile.TemporaryFile(mode="w+") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        report = None
        while p.poll() is None:
            if zero.is_file():
                try:
                    report = json.loads(zero.read_text())
                    break
                except json.JSONDecodeError:
                    pass  # still being written
            time.sleep(0.2)
        if p.poll() is None:
            p.kill()
            p.wait()
        if report is None and zero.is_file():
            report = json.loads(zero.read_text())
        if report is None:
            err.seek(0)
            return failure(err.read())
    return {"accuracy": report["test"]["score"]}


def run(args):
    binary = str(Path(args.bin).resolve())
    modern = has_zero_shot(binary)
    results = []
    with tempfile.TemporaryDirectory(prefix="bszo-zero-shot-") as work:
        for head in args.heads.split(","):
            for task in args.tasks.split(","):
                variants = [None]
                if modern and head == "masked" and task in NLI:
                    variants = ["lm-bff", "spaced"]
                for nli in variants:
                    started = time.time()
                    if modern:
                        r = run_zero_shot(binary, head, task, nli, work)
                    else:
                        r = run_finetune_until_zero_shot(binary, head, task, work)
                    r.update(task=task, head=head, nli_template=nli, seconds=round(time.time() - started, 1))
                    print(json.dumps(r), file=sys.stderr, flush=True)
                    results.append(r)
    out = {
        "binary": args.bin,
        "label": args.label,
        "mode": "zero-shot" if modern else "finetune (stopped after zero_shot.json)",
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "settings": {
            "models": MODELS,
            "max_length": MAX_LENGTH,
            "eval_batch_size": EVAL_BATCH,
            "test_cap": {"masked": MASKED_CAP, "causal": CAUSAL_CAP_DEFAULT, "causal_overrides": CAUSAL_CAP},
            "protocol": "sampled, data seed 0, 1 train / 1 validation example",
        },
        "results": results,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


def table(args):
    before = json.loads(Path(args.before).read_text())
    after = json.loads(Path(args.after).read_text())

    def cell(doc, task, head, nli=None):
        for r in doc["results"]:
            if r["task"] == task and r["head"] == head and r.get("nli_template") == nli:
                if "accuracy" in r:
                    return f"{100 * r['accuracy']:.1f}"
                return "–"
        return "–"

    def delta(b, a):
        try:
            return f"{float(a) - float(b):+.1f}"
        except ValueError:
            return ""

    print("| task | test examples (masked / causal) | masked before | masked after | Δ | masked after, `spaced` NLI | causal before | causal after | Δ |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in TASKS:
        mb = cell(before, task, "masked")
        ma = cell(after, task, "masked", "lm-bff" if task in NLI else None)
        ms = cell(after, task, "masked", "spaced") if task in NLI else ""
        cb = cell(before, task, "causal")
        ca = cell(after, task, "causal")
        n_m = next((r.get("test_size") for r in after["results"] if r["task"] == task and r["head"] == "masked" and "test_size" in r), None)
        n_c = next((r.get("test_size") for r in after["results"] if r["task"] == task and r["head"] == "causal" and "test_size" in r), None)
        sizes = f"{n_m if n_m is not None else '–'} / {n_c if n_c is not None else '–'}"
        print(f"| {task} | {sizes} | {mb} | {ma} | {delta(mb, ma)} | {ms} | {cb} | {ca} | {delta(cb, ca)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--bin", default="target/release/bszo")
    r.add_argument("--out", required=True)
    r.add_argument("--label", default="")
    r.add_argument("--heads", default="masked,causal")
    r.add_argument("--tasks", default=",".join(TASKS))
    t = sub.add_parser("table")
    t.add_argument("before")
    t.add_argument("after")
    args = ap.parse_args()
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    main()
