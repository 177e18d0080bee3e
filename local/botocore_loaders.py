"""One botocore data loader per data path for a process: the local runner's and each test process's.

Importing it imports nothing (botocore only when the function runs), so ``tests/conftest.py`` takes it before it
sets the test environment, unlike :mod:`local.runner`, whose package imports the whole runner.
"""

from __future__ import annotations


def share_botocore_data_loaders() -> None:
    """One botocore data loader per data path for the process, instead of one per boto3 session.

    The runtime makes a session per client, for every handler the runner imports (and ``mock_aws`` a session per
    test), and each new session's loader parsed botocore's service models, endpoint rules and partitions from JSON
    again. A loader only caches what it read from botocore's data files, which no session changes; the clients and
    their state stay per session. ``python -m local.runner`` and ``tests/conftest.py`` apply it (once: idempotent).
    """
    import botocore.loaders
    import botocore.session

    create_loader = botocore.session.create_loader
    if getattr(create_loader, "_flagbridge_shared", False):
        return
    loaders: dict[str | None, botocore.loaders.Loader] = {}

    def shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        if search_path_string not in loaders:
            loaders[search_path_string] = create_loader(search_path_string)
        return loaders[search_path_string]

    shared_loader._flagbridge_shared = True  # type: ignore[attr-defined]
    botocore.session.create_loader = shared_loader
