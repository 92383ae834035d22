"""The dependency slice of a kernel's history (``tracking/slicing.py``) on plain strings."""

from __future__ import annotations

from jupyter_mlops.tracking.slicing import (
    context_source,
    dependency_slice,
    names_of,
    plain_python,
)


def _numbers(source: str, history: list[str]) -> list[int]:
    return [number for number, _ in dependency_slice(source, history)]


def test_ipython_syntax_is_stripped_and_foreign_cell_magics_dropped() -> None:
    cell = "!pip list\n%matplotlib inline\nfiles = !ls\ndf?\n%time x = f()\nfor i in r:\n    %ls\n"
    assert plain_python(cell) == "x = f()\nfor i in r:\n    pass\n"
    assert plain_python("%%track -e iris --data d.csv\nacc = 1\n") == "acc = 1\n"
    assert plain_python("%%capture out\ny = 2") == "y = 2\n"
    assert plain_python("%%bash\necho hi") is None
    assert plain_python("%%writefile x.py\nprint(1)") is None
    # A cell without IPython syntax stays as written, a string's "% line" included.
    text = 's = """\n% of rows\n!important\n"""\n'
    assert plain_python(text) == text


def test_names_read_before_bound_are_free_and_stores_on_items_bind_their_base() -> None:
    names = names_of(
        "import numpy as np\n"
        "total += 1\n"
        "for i in range(3):\n    y = i\n"
        "df['c'] = np.ones(3)\n"
        "model.fit(X, y)\n"
        "with open(path) as fh:\n    text = fh.read()\n"
        "squares = [k * k for k in ks]\n"
        "def helper(a, b=default):\n    return a + offset\n"
    )
    assert names is not None
    assert {"np", "total", "i", "y", "df", "model", "fh", "text", "squares", "helper"} <= (
        names.binds
    )
    assert names.free == {"total", "range", "df", "model", "X", "open", "path", "ks", "default"}
    assert names.late == {"offset"}  # read when helper is called
    assert "k" not in names.binds | names.free
    assert names_of("def broken(:\n") is None


def test_only_the_cells_that_bind_what_the_cell_needs_are_kept() -> None:
    history = [
        "import pandas as pd\nimport matplotlib.pyplot as plt",  # 1: pd needed, plt not
        "df = pd.read_csv('a.csv')",  # 2
        "plt.plot(df.x)\nseen = True",  # 3: reads df, binds nothing needed
        "df = df.dropna()",  # 4: rebinds df from df: 2 stays
        "df.head()",  # 5: a view, changes nothing
        "df.fillna(0, inplace=True)",  # 6: changes df in place
        "threshold = 0.3",  # 7: shadowed by 9
        "def clean(frame):\n    return frame[frame.x > threshold]",  # 8
        "threshold = 0.5",  # 9: the value clean() sees when the cell calls it
        "this is not python",  # 10: skipped
    ]
    assert _numbers("X = clean(df)\nn = len(X)", history) == [1, 2, 4, 6, 8, 9]
    assert _numbers("n = 3", history) == []
    assert dependency_slice("x = (", history) == []


def test_a_function_sees_the_names_bound_after_its_definition() -> None:
    history = ["scale = 1", "def f(v):\n    return v * scale", "scale = 2", "other = f"]
    assert _numbers("out = f(3)", history) == [2, 3]


def test_context_source_heads_each_cell_with_its_number() -> None:
    cells = dependency_slice("y = x + 1", ["x = 1", "z = 2"], first=7)
    assert context_source(cells) == "# In[7]\nx = 1\n\n"
