"""Entry points: the CLI, the Prefect flow, `vaeflow tune`/`submit`. Installed as `vaeflow.flows` (pyproject.toml's
package-dir), the name every import uses; flows/cli.py is the `vaeflow` command, flows/app.py its Typer app.

Telemetry off in every process that starts here, before Prefect or Ray is imported (settings are read then):
Prefect's server sends an analytics heartbeat, which also writes to the ephemeral SQLite database and, on a
busy machine, printed a 60-line `database is locked` traceback at the start of a first `vaeflow run` (and
an error line offline). A value the user sets explicitly is kept.
"""
import os

TELEMETRY_OFF = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "RAY_USAGE_STATS_ENABLED": "0"}
for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)
