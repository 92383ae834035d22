"""Record-time reproducibility risks (``tracking/risks.py``) on real libraries and a real
git repository: which randomised calls lack a seed, which file reads nothing records."""

from __future__ import annotations

from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost
from sklearn import ensemble
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import Lasso, LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split
from sklearn.svm import SVC

from jupyter_mlops.tracking.risks import (
    TAG_RISKS,
    UNSEEDED,
    UNSNAPSHOTTED_READ,
    Risk,
    find_risks,
    recorded_risks,
)

from .conftest import git

NAMESPACE = {
    "np": np,
    "pd": pd,
    "xgboost": xgboost,
    "lightgbm": lightgbm,
    "ensemble": ensemble,
    **{
        f.__name__: f
        for f in (
            RandomForestClassifier, HistGradientBoostingClassifier, LogisticRegression, Ridge,
            Lasso, KFold, StratifiedKFold, PCA, SVC, KMeans, train_test_split, cross_val_score,
        )
    },
    "df": pd.DataFrame({"a": range(10)}),
    "seed": 3,
    "no_seed": None,
    "options": {"random_state": 1},
}  # fmt: skip


def _unseeded(code: str, namespace: dict[str, object] = NAMESPACE) -> list[str]:
    risks = find_risks(code, namespace, data_paths=[], root=".")
    assert all(r.kind == UNSEEDED for r in risks)
    return [r.subject for r in risks]


@pytest.mark.parametrize(
    ("code", "subjects"),
    [
        ("RandomForestClassifier(n_estimators=10)", ["RandomForestClassifier"]),
        ("RandomForestClassifier(random_state=None)", ["RandomForestClassifier"]),
        ("RandomForestClassifier(random_state=no_seed)", ["RandomForestClassifier"]),
        ("RandomForestClassifier(random_state=0)", []),
        ("RandomForestClassifier(random_state=seed)", []),
        ("RandomForestClassifier(**options)", []),
        ("ensemble.ExtraTreesClassifier()", ["ExtraTreesClassifier"]),
        ("KMeans(3)", ["KMeans"]),
        ("HistGradientBoostingClassifier()", ["HistGradientBoostingClassifier"]),
        ("train_test_split(df, test_size=0.2)", ["train_test_split"]),
        ("train_test_split(df, shuffle=False)", []),  # a plain cut: nothing random
        ("df.sample(frac=0.5)", ["DataFrame.sample"]),
        ("df.sample(3, random_state=1)", []),
        # random_state in the signature, but the default options never use it
        ("LogisticRegression()", []),
        ("LogisticRegression(solver='lbfgs', max_iter=200)", []),
        ("LogisticRegression(solver='saga')", ["LogisticRegression"]),
        ("Ridge()", []),
        ("Lasso()", []),
        ("Lasso(selection='random')", ["Lasso"]),
        ("KFold(5)", []),
        ("KFold(5, shuffle=True)", ["KFold"]),
        ("StratifiedKFold(shuffle=True, random_state=0)", []),
        ("PCA(2)", []),
        ("PCA(2, svd_solver='randomized')", ["PCA"]),
        ("SVC()", []),
        ("SVC(probability=True)", ["SVC"]),
        ("cross_val_score(None, df, cv=5)", []),
        # seeded by default in their own code
        ("xgboost.XGBClassifier(n_estimators=5)", []),
        ("lightgbm.LGBMClassifier(n_estimators=5)", []),
        # nested: the estimator inside a search or a pipeline is still seen
        ("KFold(3).split(RandomForestClassifier().fit)", ["RandomForestClassifier"]),
    ],
)
def test_unseeded_random_calls(code: str, subjects: list[str]) -> None:
    assert _unseeded(code) == subjects


def test_a_global_numpy_seed_seeds_every_call() -> None:
    assert _unseeded("np.random.seed(0)\nmodel = RandomForestClassifier()") == []
    # an earlier cell's seed (in the context), under another name
    context = "from numpy.random import seed\nseed(1)\n"
    namespace = {**NAMESPACE, "seed": np.random.seed}
    risks = find_risks("RandomForestClassifier()", namespace, data_paths=[], root=".",
                       context_source=context)  # fmt: skip
    assert risks == []


def test_the_context_is_read_and_each_subject_is_reported_once() -> None:
    risks = find_risks(
        "a = RandomForestClassifier()\nb = RandomForestClassifier(max_depth=2)",
        NAMESPACE,
        data_paths=[],
        root=".",
        context_source="X_tr, X_te = train_test_split(df)",
    )
    assert [(r.kind, r.subject) for r in risks] == [
        (UNSEEDED, "train_test_split"),
        (UNSEEDED, "RandomForestClassifier"),
    ]
    assert "random_state" in risks[1].message


def test_unresolvable_or_unparsable_code_is_not_reported() -> None:
    assert _unseeded("model = NotDefined()\nthing.fit()") == []
    assert _unseeded("model = (") == []


@pytest.fixture
def repo(git_project: Path) -> Path:
    """A git project with a committed file, a file changed since its commit, a file never
    added, a snapshotted file and folder (as --data gives them)."""
    root = git_project
    (root / "data" / "parts").mkdir(parents=True)
    (root / "data" / "committed.csv").write_text("a\n1\n")
    (root / "changed.csv").write_text("a\n1\n")
    git(root, "add", "data/committed.csv", "changed.csv")
    git(root, "commit", "-q", "-m", "data")
    (root / "changed.csv").write_text("a\n2\n")
    (root / "data" / "loose.csv").write_text("a\n3\n")
    (root / "data" / "snap.csv").write_text("a\n4\n")
    (root / "data" / "parts" / "p1.csv").write_text("a\n5\n")
    (root / "config.json").write_text("[1]\n")
    return root


@pytest.mark.parametrize(
    ("code", "subjects"),
    [
        ("pd.read_csv('data/loose.csv')", ["data/loose.csv"]),
        ("pd.read_csv(loose)", ["data/loose.csv"]),  # a name bound to the path
        ("pd.read_csv(filepath_or_buffer=as_path)", ["data/loose.csv"]),
        ("pd.read_csv(folder / 'loose.csv')", ["data/loose.csv"]),
        ("pd.read_csv(Path('data', 'loose.csv'))", ["data/loose.csv"]),
        ("as_path.read_bytes()", ["data/loose.csv"]),
        ("Path('config.json').read_text()", ["config.json"]),
        ("json.load(open('config.json'))", ["config.json"]),
        ("with open(loose) as fh:\n    rows = fh.readlines()", ["data/loose.csv"]),
        ("np.loadtxt('data/loose.csv', skiprows=1)", ["data/loose.csv"]),
        ("pd.read_csv('changed.csv')", ["changed.csv"]),  # committed, changed since
        # recorded: committed unchanged, or snapshotted with --data (a file or a folder)
        ("pd.read_csv('data/committed.csv')", []),
        ("pd.read_csv('data/snap.csv')", []),
        ("pd.read_csv('data/parts/p1.csv')", []),
        # not a read of an existing file
        ("pd.read_csv('data/missing.csv')", []),
        ("open('config.json', 'w').write('[]')", []),
        ("pd.read_csv(unknown_name)", []),
        ("df.to_csv('data/loose.csv')", []),
    ],
)
def test_unsnapshotted_reads(repo: Path, code: str, subjects: list[str]) -> None:
    import json

    namespace = {
        "pd": pd, "np": np, "json": json, "Path": Path, "df": NAMESPACE["df"],
        "loose": "data/loose.csv", "as_path": Path("data/loose.csv"), "folder": Path("data"),
    }  # fmt: skip
    risks = find_risks(code, namespace, data_paths=["data/snap.csv", "data/parts"], root=repo)
    assert [r.subject for r in risks] == subjects
    assert all(r.kind == UNSNAPSHOTTED_READ and "--data" in r.message for r in risks)


def test_a_file_outside_any_repository_is_not_recorded(project: Path) -> None:
    (project / "data.csv").write_text("a\n1\n")
    risks = find_risks("pd.read_csv('data.csv')", {"pd": pd}, data_paths=[], root=project)
    assert [r.subject for r in risks] == ["data.csv"]


def test_recorded_risks_read_the_tag_back() -> None:
    risk = Risk(UNSEEDED, "KMeans", "KMeans is called without random_state")
    import json

    assert recorded_risks({TAG_RISKS: json.dumps([risk.to_dict()])}) == [risk]
    assert recorded_risks({}) == []
    assert recorded_risks({TAG_RISKS: "not json"}) == []
