"""`vaeflow report`: the README's default-results block from metrics/ (vaeflow/results_table.py).

Registered on the app (flows/app.py) when flows/cli.py, the entry point, imports this module.
"""
from __future__ import annotations

import difflib
from pathlib import Path

import typer

from vaeflow.flows.app import _fail, app, console, guarded


@app.command("report")
def report(readme_table: bool = typer.Option(False, "--readme-table", help="print the README's results block"),
           update_readme: bool = typer.Option(False, "--update-readme", help="write it between README's markers"),
           check_readme: bool = typer.Option(False, "--check-readme", help="exit 1 unless README's block is what "
                                             "the metrics give"),
           metrics: Path = typer.Option(Path("metrics/metrics.json"), "--metrics", help="from `vaeflow run`"),
           readme: Path = typer.Option(Path("README.md"), "--readme")) -> None:
    """The default-results tables and figures the README shows, rendered from a run's metrics."""
    from vaeflow import results_table as rt
    from vaeflow.io import read_json, write_text

    if not metrics.is_file():
        _fail(2, f"{metrics} not found: run `vaeflow run` first (the README's figures come from its metrics); a "
                 "run with --set or another params file wrote runs/<name>/metrics/metrics.json: pass it as --metrics")
    m = guarded(lambda: read_json(metrics))
    if readme_table or not (update_readme or check_readme):
        typer.echo(rt.render(m), nl=False)
    if update_readme or check_readme:
        text = guarded(readme.read_text)
        if rt.readme_block(text) is None:
            typer.echo(f"{rt.BEGIN}\n{rt.END}", err=True)  # unwrapped, to copy as they are
            _fail(2, f"{readme} has no results block: put the two marker lines above where it should go, then re-run")
    if update_readme:
        guarded(lambda: write_text(readme, rt.update(text, m, rt.machine())))
        console.print(f"{readme}: results block updated from {metrics}", highlight=False, markup=False)
    if check_readme:
        if not rt.matches(text, m):
            old = rt.without_machine(rt.readme_block(text) or "").splitlines()
            new = rt.without_machine(rt.block(m, "")).splitlines()
            typer.echo("\n".join(difflib.unified_diff(old, new, "README.md", str(metrics), lineterm="")), err=True)
            again = " ".join(["vaeflow report --update-readme",
                              *([] if metrics == Path("metrics/metrics.json") else [f"--metrics {metrics}"]),
                              *([] if readme == Path("README.md") else [f"--readme {readme}"])])
            _fail(1, f"{readme}'s results block is not what {metrics} gives; run `{again}`"
                     f" (README's block was made on: {rt.readme_machine(text)}; this machine: {rt.machine()})")
        console.print(f"{readme}'s results block matches {metrics}", highlight=False, markup=False)
