"""`open_store(create=False)`: tools that work on an existing store refuse to make a new one."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_support import DB

from interlock.errors import BadInput
from interlock.store import open_store


def test_a_database_with_no_interlock_tables_is_refused_not_migrated(db: DB) -> None:
    if db.backend == "sqlite":  # an empty file, as `touch` leaves it
        Path(db.url.removeprefix("sqlite:///")).touch()
    with pytest.raises(BadInput, match="holds no interlock database"):
        open_store(db.url, connect_args=db.connect_args, create=False)
    # nothing was migrated: a store that may create one finds it empty and makes it
    db.open().close()
    store = open_store(db.url, connect_args=db.connect_args, create=False)
    try:
        assert store.verify().ok
    finally:
        store.close()


def test_a_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(BadInput, match=f"no database at `{path}`"):
        open_store(f"sqlite:///{path}", create=False)
    assert not path.exists()
