"""Regressions found by a hostile review of the PostgreSQL + S3 server backends."""

from __future__ import annotations

import pytest

from manifest_tool.errors import RemoteError
from manifest_tool.remotes.db import PostgresDatabase, redact_url

SECRET = "Sekr3t%2Fpw"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET}@127.0.0.1:1/db",
        f"postgresql://u@127.0.0.1:1/db?password={SECRET}",
        f"postgresql://127.0.0.1:1/db?sslmode=disable&PassWord={SECRET}&user=u",
    ],
)
def test_a_database_password_never_shows_in_its_name_or_connect_error(url: str) -> None:
    assert "Sekr3t" not in redact_url(url) and "***" in redact_url(url)
    with pytest.raises(RemoteError) as err:
        PostgresDatabase(url)
    assert "cannot connect" in str(err.value) and "Sekr3t" not in str(err.value), err.value
