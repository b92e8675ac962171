"""vaeflow: a reproducible training workflow in three layers, flows → tasks → vaeflow (the library).

Installed, this package holds all three: vaeflow.flows, vaeflow.tasks and the library's modules. In the
repository, flows/ and tasks/ sit beside this folder instead (pyproject.toml's package-dir maps them, and an
editable install finds them there). So that a checkout also imports as it is, uninstalled (a clone on
PYTHONPATH, the copy of a project that `vaeflow submit` ships as a Ray job's working_dir), the finder below
maps the two names onto the sibling folders whenever this package was imported from a checkout.
"""
import importlib.abc
import importlib.util
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_SIBLINGS = {f"vaeflow.{name}": _HERE.parent / name for name in ("flows", "tasks")
             if not (_HERE / name).is_dir() and (_HERE.parent / name / "__init__.py").is_file()}


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """vaeflow.flows and vaeflow.tasks from the folders beside this package; submodules then follow their
    package's __path__ as usual."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001  (importlib's signature)
        folder = _SIBLINGS.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


# First, so that it wins over an editable install of another checkout; once, even when the package is
# imported again (flows/deps_trace.py forgets and re-imports every project module).
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_CheckoutFinder"]
if _SIBLINGS:
    sys.meta_path.insert(0, _CheckoutFinder())
