"""load_adult on a local folder with a few rows (nothing is downloaded): parsing, grouping, codes, checksums."""
import hashlib

import numpy as np
import pytest

from xrl.datasets import adult as adult_mod
from xrl.datasets.adult import FEATURE_NAMES, load_adult

TRAIN = """39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, <=50K
38, Private, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Male, 0, 0, 40, ?, >50K
53, ?, 234721, 11th, 7, Married-civ-spouse, ?, Husband, Black, Male, 0, 0, 40, Cuba, >50K

"""
TEST = """|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Not-in-family, Black, Male, 0, 0, 40, United-States, <=50K.
38, Private, 89814, HS-grad, 9, Married-civ-spouse, Farming-fishing, Husband, White, Male, 0, 0, 50, Cuba, >50K.
"""


@pytest.fixture
def local(tmp_path, monkeypatch):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "adult.data").write_text(TRAIN)
    (folder / "adult.test").write_text(TEST)
    sums = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in ("adult.data", "adult.test")}
    monkeypatch.setattr(adult_mod, "SHA256", sums)
    monkeypatch.setenv("XRL_DATA_DIR", str(tmp_path / "cache"))
    return folder


def test_local_folder_layout_and_codes(local, tmp_path):
    ds = load_adult(local_dir=local, download=False, as_frame=True)
    assert ds.data.shape == (4, 12) and ds.data.dtype == np.int64 and ds.feature_names == FEATURE_NAMES
    assert ds.target.tolist() == [0, 0, 1, 1] and ds.target_names == ["<=50K", ">50K"]
    cmap = ds.category_map
    assert sorted(cmap) == [1, 2, 3, 4, 5, 6, 7, 11]
    assert cmap[2] == ["Bachelors", "Dropout", "High School grad"]  # 11th -> Dropout, HS-grad grouped
    assert cmap[3] == ["Married", "Never-Married", "Separated"]
    assert cmap[11] == ["?", "Other", "United-States"]  # Cuba -> Other, "?" kept as a category
    assert ds.frame.loc[3, "Workclass"] == "?" and ds.frame.loc[0, "Occupation"] == "Admin"
    for j, cats in cmap.items():  # codes index the category names
        assert (np.asarray(cats, dtype=object)[ds.data[:, j]] == ds.frame.iloc[:, j].to_numpy()).all()
    assert ds.data[0, FEATURE_NAMES.index("Capital Gain")] == 2174
    assert (tmp_path / "cache" / "adult" / "adult.data").is_file()  # cached


def test_test_subset_uses_train_category_map(local):
    te = load_adult("test", local_dir=local, download=False)
    tr = load_adult("train", local_dir=local, download=False)
    assert te.category_map == tr.category_map
    assert te.target.tolist() == [0, 1]  # the trailing "." of adult.test is stripped
    assert len(load_adult("all", local_dir=local, download=False)) == 6


def test_cached_file_is_verified_and_refetched(local, tmp_path):
    load_adult(local_dir=local, download=False)
    cached = tmp_path / "cache" / "adult" / "adult.data"
    cached.write_text("corrupt")
    assert len(load_adult(local_dir=local, download=False)) == 4  # corrupt cache replaced from local_dir
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == adult_mod.SHA256["adult.data"]


def test_checksum_mismatch_and_missing(local, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adult.data").write_text(TRAIN.replace("39,", "40,"))
    with pytest.raises(RuntimeError, match="could not obtain adult.data"):
        load_adult(local_dir=bad, download=False)
    with pytest.raises(FileNotFoundError, match="download=False"):
        load_adult(download=False)
    with pytest.raises(ValueError, match="local_dir"):
        load_adult(local_dir=tmp_path / "nope", download=False)
    with pytest.raises(ValueError, match="subset"):
        load_adult("validation", local_dir=local, download=False)


def test_unknown_category_in_test_file_is_reported(local, monkeypatch):
    (local / "adult.test").write_text(TEST.replace("Black", "Martian"))
    monkeypatch.setitem(adult_mod.SHA256, "adult.test",
                        hashlib.sha256((local / "adult.test").read_bytes()).hexdigest())
    with pytest.raises(ValueError, match="Martian"):
        load_adult("test", local_dir=local, download=False)
