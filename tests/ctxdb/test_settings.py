"""ctxdb.Failover: DBConnect's failover settings as one frozen value, and the old keywords.

Pure: building a DBConnect connects nothing, so no server is needed.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from ctxdb import DBConnect, Failover

UPSTREAM = {"engine_creator", "session_maker_creator", "host", "before_create_session_handler"}
URL = "postgresql+asyncpg://app@127.0.0.1:1/db"


def test_dbconnect_takes_at_most_eight_keywords_besides_failover_and_upstreams() -> None:
    own = [
        p.name
        for p in inspect.signature(DBConnect).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in UPSTREAM | {"failover"}
    ]
    assert len(own) <= 8, own


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"wait": 0}, "Failover.wait must be a number of seconds > 0"),
        ({"dispose_timeout": "5"}, "Failover.dispose_timeout must be"),
        ({"spares": 1}, "Failover.spares must be True or False"),
    ],
)
def test_a_bad_failover_fails_when_built(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Failover(**fields)


def test_the_failover_reaches_the_connect() -> None:
    failover = Failover(wait=1.5, spares=False)
    db = DBConnect(url=URL, failover=failover)
    assert db.failover is failover
    assert db._failover_wait == 1.5


def test_the_old_keywords_still_work_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="keywords moved") as caught:
        db = DBConnect(url=URL, failover=Failover(warm_up=False), failover_wait=2.0, spares=False)
    assert len(caught) == 1
    assert "failover_wait= -> failover=Failover(wait=...)" in str(caught[0].message)
    assert caught[0].filename == __file__
    assert db.failover == Failover(wait=2.0, warm_up=False, spares=False)


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword arguments: failover_wiat"):
        DBConnect(url=URL, failover_wiat=2.0)


def test_failover_must_be_the_object() -> None:
    with pytest.raises(TypeError, match=r"failover must be a ctxdb\.Failover"):
        DBConnect(url=URL, failover={"wait": 2.0})  # type: ignore[arg-type]
