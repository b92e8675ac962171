"""Your own data: folders with litter in them (hidden folders, non-image files), roots that are missing, class
names that differ between two folders, and colour data made grey. The data layer itself is tests/test_data.py."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import LogLines, cfg_with
from vaeflow.config import Config
from vaeflow.data import DataError


def _tiny_folder(root, classes=("0", "1"), per_class=3):
    from PIL import Image

    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(np.full((8, 8), 40 * i + 100 * int(c), np.uint8)).save(root / split / c / f"{i}.png")


def test_hidden_folders_and_non_image_files_are_skipped_and_counted(tmp_path):
    from vaeflow.config import DataConfig
    from vaeflow.data.files import load_folder_pool

    _tiny_folder(tmp_path)
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()          # Jupyter's litter: not a class
    (tmp_path / "train" / "0" / "notes.txt").write_text("labels checked by hand")
    (tmp_path / "test" / "1" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "train" / "1" / "._0.png").write_bytes(b"\0\5\26\7")  # a macOS fork with an image suffix
    with LogLines() as lines:
        pool = load_folder_pool(f"folder:{tmp_path}", DataConfig())
    assert pool.n_classes == 2 and len(pool.y) == 12  # exactly the 12 images
    [line] = [ln for ln in lines if "skipped" in ln]
    assert "skipped 4 entries" in line and "3 hidden" in line and "1 not .png/.jpg/.jpeg" in line
    assert "notes.txt" in line


def test_clean_folder_logs_nothing_skipped(tmp_path):
    from vaeflow.config import DataConfig
    from vaeflow.data.files import load_folder_pool

    _tiny_folder(tmp_path)
    with LogLines() as lines:
        load_folder_pool(f"folder:{tmp_path}", DataConfig())
    assert not [ln for ln in lines if "skipped" in ln]


@pytest.mark.parametrize("what", ["folder", "npz", "root"])
def test_check_roots_names_the_missing_path(what, tmp_path):
    from vaeflow.data.files import check_roots

    missing = tmp_path / "nowhere"
    data = {"folder": {"target": f"folder:{missing}"}, "npz": {"source": f"npz:{missing}"},
            "root": {"target": "mnist", "root": str(missing), "download": False}}[what]
    with pytest.raises(DataError, match=str(missing)):
        check_roots(cfg_with(**data).data)
    _tiny_folder(missing)
    np.savez(missing / "train.npz", x=np.zeros((2, 8, 8), np.uint8), y=np.array([0, 1]))
    np.savez(missing / "test.npz", x=np.zeros((2, 8, 8), np.uint8), y=np.array([0, 1]))
    if what == "root":  # the folder alone is not enough: the loader's files must be there (names only, here)
        with pytest.raises(DataError, match="mnist files not found"):
            check_roots(cfg_with(**data).data)
        from vaeflow.data.mnist import FILES

        (missing / "mnist").mkdir()
        for name in FILES:
            (missing / "mnist" / name).touch()
    check_roots(cfg_with(**data).data)  # present: no error
    check_roots(Config().data)  # digits need no root, even where ../shared/data is absent


def test_validate_refuses_a_missing_data_root(tmp_path):
    from tests.cli_utils import run_cli
    from tests.conftest import REPO

    missing = tmp_path / "my_images"
    p = run_cli(tmp_path, "validate", "--params", str(REPO / "params.yaml"), "--set", f"data.target=folder:{missing}")
    assert p.returncode == 2, p.stdout
    assert str(missing) in p.stdout.replace("\n", "")


def test_two_folders_must_name_their_classes_alike(tmp_path):
    """Labels are each folder's sorted class names: "0", "1" against "0", "one" would number one class 1 in the
    source and another in the target. Refused before anything is read, naming both lists."""
    from vaeflow.data import build_domains
    from vaeflow.data.files import check_same_classes

    _tiny_folder(tmp_path / "a")
    _tiny_folder(tmp_path / "b")
    check_same_classes(f"folder:{tmp_path / 'a'}", f"folder:{tmp_path / 'b'}")  # the same names: fine
    for split in ("train", "test"):
        (tmp_path / "b" / split / "1").rename(tmp_path / "b" / split / "one")
    with pytest.raises(DataError, match=r"\['0', '1'\] against \['0', 'one'\]"):
        build_domains(cfg_with(source=f"folder:{tmp_path / 'a'}", target=f"folder:{tmp_path / 'b'}"))


def test_colour_data_made_grey_by_the_default_is_said_once(tmp_path):
    """data.channels=1 (the default) turns RGB into luma: one log line per dataset read, not one per image
    (a warning naming the dataset: tests/test_data_messages.py)."""
    from PIL import Image

    from vaeflow.config import DataConfig
    from vaeflow.data.files import load_folder_pool

    for split in ("train", "test"):
        for c in ("0", "1"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8, 3), 60 * i + 100 * int(c), np.uint8)).save(tmp_path / split / c / f"{i}.png")
    import logging

    with LogLines(level=logging.INFO) as lines:
        pool = load_folder_pool(f"folder:{tmp_path}", DataConfig())
        assert pool.x.shape[1] == 1
        assert [ln for ln in lines if "(grey)" in ln] == [
            f"folder:{tmp_path}: 12 colour (3-channel) images converted to 1 channel (grey) because data.channels=1; "
            "set data.channels=3 to keep colour"]
        lines.clear()
        load_folder_pool(f"folder:{tmp_path}", DataConfig(channels=3))
        assert not [ln for ln in lines if "(grey)" in ln]
