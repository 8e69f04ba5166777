"""ctxdb.engine_url: libpq parameters of a DBConnect URL, as each driver needs them."""

from __future__ import annotations

import pytest

from ctxdb import DBConnect
from ctxdb.engine_url import engine_url

TLS = "sslmode=verify-full&sslrootcert=%2Fca.pem&sslcert=%2Fc.pem&sslkey=%2Fk.pem"


def test_asyncpg_gets_the_libpq_settings_as_a_query_only_dsn() -> None:
    url, args = engine_url(
        f"postgresql+asyncpg://app:pw@db1:5432,db2:5433/app?{TLS}&sslpassword=kp&sslcrl=%2Fcrl"
        "&options=-c%20statement_timeout%3D5s&application_name=svc&connect_timeout=3"
        "&target_session_attrs=read-write&prepared_statement_cache_size=0"
    )
    assert url.host is None  # each engine gets its host from DBConnect
    assert dict(url.query) == {
        "target_session_attrs": "read-write",  # an asyncpg keyword
        "prepared_statement_cache_size": "0",  # a dialect option
    }
    assert args.pop("async_creator_fn").__name__ == "_connect_explaining_key_errors"
    assert args == {
        "dsn": "postgresql://?sslmode=verify-full&sslrootcert=%2Fca.pem&sslcert=%2Fc.pem"
        "&sslkey=%2Fk.pem&sslpassword=kp&sslcrl=%2Fcrl"
        "&options=-c+statement_timeout%3D5s&application_name=svc",
        "timeout": 3.0,
    }
    assert "kp" not in repr(url)
    assert "kp" not in str(url)


def test_psycopg_keeps_libpq_settings_but_not_the_key_password_in_the_url() -> None:
    url, args = engine_url(
        f"postgresql+psycopg://app:pw@db1,db2/app?{TLS}&sslpassword=kp&channel_binding=require",
        {"connect_timeout": 5},
    )
    assert url.host is None
    assert url.query["sslmode"] == "verify-full"
    assert url.query["channel_binding"] == "require"
    assert "sslpassword" not in url.query
    assert args == {"sslpassword": "kp", "connect_timeout": 5}


def test_a_single_host_stays_and_user_connect_args_win() -> None:
    url, args = engine_url(
        "postgresql+asyncpg://app@db1:6000/app?connect_timeout=3", {"timeout": 9}
    )
    assert (url.host, url.port) == ("db1", 6000)
    assert args == {"timeout": 9}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+asyncpg://u:hunter2@/db?sslmode=sometimes", "invalid sslmode 'sometimes'"),
        ("postgresql+psycopg://u:hunter2@/db?channel_binding=x", "invalid channel_binding 'x'"),
        ("postgresql+asyncpg://u:hunter2@/db?channel_binding=require", "cannot be honoured"),
        ("postgresql+asyncpg://u:hunter2@/db?ssl=true&sslmode=require", "both ssl and sslmode"),
        ("postgresql+asyncpg://u:hunter2@/db?connect_timeout=soon", "invalid connect_timeout"),
        ("postgresql+asyncpg://u:hunter2@/db?sslmode=require&sslmode=disable", "more than once"),
    ],
)
def test_bad_settings_fail_when_the_dbconnect_is_made(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        DBConnect(url=url, host="db1")
    assert "hunter2" not in str(info.value)
