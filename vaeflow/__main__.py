"""`python -m vaeflow`: the `vaeflow` command (flows/cli.py, installed as vaeflow.flows.cli)."""
from vaeflow.flows.cli import main

if __name__ == "__main__":
    main()
