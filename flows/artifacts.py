"""What a flow run shows in the Prefect UI (flow run page, "Artifacts" tab; or Artifacts in the sidebar).

- `vaeflow-report` (markdown): reports/report.md with its figures inlined as data: URIs, because the UI is
  a web page served from Prefect's database and cannot load the files under reports/figures, and its
  tables as HTML, which wrap and scroll where the UI's table component cuts columns off (both in
  vaeflow.inline_figures); reports/report.md on disk keeps its relative links and markdown tables.
- `vaeflow-likelihoods`, `vaeflow-adaptation` (tables): the headline numbers, units in the column names.
- `vaeflow-metrics` (table): every scalar of metrics/metrics.json, one row each, with its unit.
- `vaeflow-data` (table): domains and split sizes.
- `vaeflow-provenance` (markdown): the git commit, uncommitted changes, the params, and the dvc.lock hashes
  of the outputs, so that a run can be traced to its code and data; plus `vaeflow-commit` (link) when the
  checkout's `origin` is a web host.
"""
from __future__ import annotations

import hashlib
import logging
import re
import subprocess
from pathlib import Path

import yaml
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from vaeflow.inline_figures import html_tables, inline_images
from vaeflow.io import read_json
from vaeflow.paths import Paths

log = logging.getLogger("vaeflow")
# Unit of a metric, by the end of its name; first match wins.
UNITS = (("bits_per_dim", "bits/dim"), ("_nats", "nats/image"), ("_nats_source", "nats/image"),
         ("_nats_target", "nats/image"), ("nll_stderr", "nats/image"), ("_acc", "fraction"),
         ("_acc_std", "fraction"), ("seconds", "s"), ("_train", "s"), ("_fit", "s"), ("n_labelled", "images"),
         ("n_test", "images"), ("samples", "samples"), ("epoch", "epochs"), ("epochs_run", "epochs"))


def unit(name: str) -> str:
    return next((u for suffix, u in UNITS if name.endswith(suffix)), "")


def metric_rows(m: dict) -> list[dict]:
    """Every scalar in metrics.json (lists, e.g. per-seed accuracies, are left to the file)."""
    def walk(prefix: str, node: object):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, (int, float, str, bool)) or node is None:
            yield {"metric": prefix, "value": node, "unit": unit(prefix)}
    return list(walk("", m))


def _r(x: object, digits: int) -> object:
    return round(x, digits) if isinstance(x, float) else x


def likelihood_rows(m: dict) -> list[dict]:
    """One row per model; lower is better. Rounded for reading: the full values are in vaeflow-metrics."""
    g, v = m["gmm"], m["vae"]
    rows = [(f"{g['family']} mixture, K={g['n_components']} (EM)", g["test_nll_nats"], None, g["test_bits_per_dim"],
             g["test_nll_nats_source"], g["test_nll_nats_target"]),
            ("VAE, −ELBO (upper bound)", v["test_nelbo_nats"], None, v["test_nelbo_bits_per_dim"], None, None),
            (f"VAE, IWAE k={v['iwae_samples']}", v["test_nll_nats"], v["test_nll_stderr"], v["test_bits_per_dim"],
             v["test_nll_nats_source"], v["test_nll_nats_target"])]
    return [{"model": name, "NLL (nats/image)": _r(nll, 2), "± s.e. (nats/image)": _r(se, 2), "bits/dim": _r(bpd, 4),
             "source NLL (nats/image)": _r(src, 2), "target NLL (nats/image)": _r(tgt, 2)}
            for name, nll, se, bpd, src, tgt in rows]


def adaptation_rows(m: dict) -> list[dict]:
    return [{"variant": k, "target accuracy (fraction)": _r(r["target_test_acc"], 3),
             "± std over seeds (fraction)": _r(r.get("target_test_acc_std"), 3),
             "seeds": len(r.get("target_test_acc_runs", [1])), "source accuracy (fraction)": _r(r.get("source_test_acc"), 3),
             "labelled images": r.get("n_labelled"), "train time (s)": _r(r.get("train_seconds"), 1)}
            for k, r in m["adapt"].items()]


def _git(root: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def commit_url(remote: str | None, sha: str) -> str | None:
    """The web page of `sha` when `origin` is on GitHub, GitLab or Bitbucket (https or ssh form)."""
    m = re.match(r"^(?:https://(?:[^@/]+@)?|git@|ssh://git@)(github\.com|gitlab\.com|bitbucket\.org)[:/](.+?)(?:\.git)?/?$",
                 remote or "")
    if not m:
        return None
    return f"https://{m[1]}/{m[2]}/{'commits' if m[1] == 'bitbucket.org' else 'commit'}/{sha}"


def provenance(root: Path, params_file: str, overrides: list[str], tracked: bool) -> tuple[str, str | None]:
    """(markdown, commit URL or None): the code, params and data a run used."""
    sha = _git(root, "rev-parse", "HEAD")
    lines = ["# Provenance", ""]
    if sha is None:
        lines.append("- code: not a git checkout")
    else:
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
        lines.append(f"- git commit `{sha}`" + (" **with uncommitted changes**" if dirty else " (clean working tree)"))
    lines.append(f"- params: `{params_file}`" + (f", overrides `{' '.join(overrides)}`" if overrides else ""))
    lock = root / "dvc.lock"
    if tracked and lock.is_file():
        text = lock.read_text()
        lines += [f"- `dvc.lock` sha256 `{hashlib.sha256(text.encode()).hexdigest()[:16]}…`; outputs "
                  "(`dvc checkout` restores them from the cache):", "", "| stage | output | md5 |", "|---|---|---|"]
        for stage, s in (yaml.safe_load(text) or {}).get("stages", {}).items():
            lines += [f"| {stage} | `{o['path']}` | `{o.get('md5', '')}` |" for o in s.get("outs", [])]
    else:
        lines.append("- dvc.lock: not recorded for this run (params differ from params.yaml, or no DVC project)")
    url = commit_url(_git(root, "remote", "get-url", "origin"), sha) if sha else None
    return "\n".join(lines) + "\n", url


def publish(paths: Paths, ran: list[str], params_file: str = "params.yaml", overrides: list[str] | None = None,
            tracked: bool = False) -> dict:
    """Create the run's artifacts; returns the inlined report's sizes (for logs and tests)."""
    m = read_json(paths.all_metrics)
    create_table_artifact(key="vaeflow-likelihoods", table=likelihood_rows(m),
                          description="Same test images (both domains), same units; lower is better")
    create_table_artifact(key="vaeflow-adaptation", table=adaptation_rows(m),
                          description="Target-domain test accuracy of each adaptation variant")
    create_table_artifact(key="vaeflow-metrics", table=metric_rows(m), description="metrics/metrics.json")
    meta = read_json(paths.data_meta)
    create_table_artifact(key="vaeflow-data", description="data/prepared/meta.json", table=[
        {"domain": d, "dataset": i["name"], **{f"{s} images": n for s, n in i["counts"].items()}}
        for d, i in meta["domains"].items()])
    inl = inline_images(paths.report.read_text(), paths.report.parent)
    if inl.missing:
        log.warning("report links missing figures: %s", ", ".join(inl.missing))
    # tables as HTML: the UI's own table component cuts wide ones off (vaeflow.inline_figures.html_tables)
    md = html_tables(inl.markdown) + f"\n\nStages run this time: {', '.join(ran) or 'none'}\n"
    create_markdown_artifact(key="vaeflow-report", markdown=md, description="reports/report.md, figures inlined")
    log.info("vaeflow-report artifact: %d figures inlined, %.0f kB stored in Prefect's database",
             len(inl.figures), len(md.encode()) / 1e3)
    text, url = provenance(paths.root.resolve(), params_file, list(overrides or []), tracked)
    create_markdown_artifact(key="vaeflow-provenance", markdown=text, description="code, params and data of this run")
    if url:
        create_link_artifact(key="vaeflow-commit", link=url, link_text=url.rsplit("/", 1)[-1][:12],
                             description="the git commit this run ran")
    return {"figures": inl.figures, "report_bytes": len(md.encode()), "missing": inl.missing}
