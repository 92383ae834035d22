"""DVC snapshots of the data files and folders a run reads, and restoring them by hash.

A snapshot is what ``dvc add`` records: the content goes into the project's DVC cache
(``.dvc/cache/files/md5/<2 hex>/<30 hex>``) and a ``<path>.dvc`` file names its md5, so the
exact bytes a run read can be put back later. With a DVC remote (``dvc_remote`` in
``[tool.jupyter-mlops]``, or DVC's own default remote) each snapshot is also pushed there,
and :func:`restore` fetches what the local cache lacks by hash, so another machine or a
fresh clone can restore it. All contact with DVC is in this package:

* :mod:`.record` the :class:`DataSnapshot` a run records
* :mod:`.paths` which paths can be snapshotted
* :mod:`.repo` opening and initialising the DVC repo
* :mod:`.remote` the DVC remote: resolving, pushing, fetching
* :mod:`.fastcopy` reading a file once to hash and copy it
* :mod:`.state` the state file that makes unchanged data cost a few ``stat`` calls
* :mod:`.dvcfiles` ``.dvc`` files, cache objects and manifests read without DVC
* :mod:`.snapshotting` :func:`snapshot`; :mod:`.restoring` :func:`restore`
* :mod:`.keep` every snapshot's objects kept safe from ``dvc gc``
* :mod:`.pointers` whether a run's git commit holds its ``.dvc`` files

DVC itself (``dvc.repo``, ~0.3 s to import) is only imported inside the functions that
need it, so importing this package, and re-snapshotting unchanged data, never loads it.
"""

from jupyter_mlops.data import pointers
from jupyter_mlops.data.paths import resolve_paths
from jupyter_mlops.data.record import DataSnapshot
from jupyter_mlops.data.remote import PushError
from jupyter_mlops.data.repo import ensure_dvc
from jupyter_mlops.data.restoring import restore
from jupyter_mlops.data.snapshotting import snapshot

__all__ = [
    "DataSnapshot",
    "PushError",
    "ensure_dvc",
    "pointers",
    "resolve_paths",
    "restore",
    "snapshot",
]
