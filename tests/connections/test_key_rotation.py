"""Several token keys (MultiFernet) and ``qbconnect rotate-key``: old tokens stay readable, rotation re-encrypts
every token under the newest key, batch by batch, and an interrupted run resumes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from qbconnect.cli import app
from qbconnect.connections.key_rotation import TOKEN_TABLES, RotationReport, _rotate_one, rotate_tokens
from qbconnect.db.crypto import TokenCipher
from qbconnect.db.models import Location, QboConnection
from qbconnect.runtime import Runtime, build_runtime
from tests.conftest import make_settings

OLD_KEY = "old-secret-key-0123456789-0123456789-abc"
NEW_KEY = "new-secret-key-0123456789-0123456789-xyz"


def test_tokens_written_under_a_previous_key_still_decrypt() -> None:
    old_token = TokenCipher(OLD_KEY).encrypt("crm-access-1")
    with pytest.raises(ValueError, match="cannot be decrypted"):
        TokenCipher(NEW_KEY).decrypt(old_token)
    both = TokenCipher(NEW_KEY, [OLD_KEY])
    assert both.decrypt(old_token) == "crm-access-1"
    fresh = both.encrypt("crm-access-2")
    assert TokenCipher(NEW_KEY).decrypt(fresh) == "crm-access-2"  # new writes use the newest key only
    assert not both.is_current(old_token) and both.is_current(fresh)


@pytest.fixture
def old_runtime(db_url: str, queue_url: str) -> Iterator[Runtime]:
    rt = build_runtime(make_settings(db_url, queue_url, secret_key=OLD_KEY))
    yield rt
    rt.close()


@pytest.fixture
def new_runtime(db_url: str, queue_url: str) -> Iterator[Runtime]:
    previous = f"another-older-key, {OLD_KEY}"  # comma-separated, spaces allowed
    rt = build_runtime(make_settings(db_url, queue_url, secret_key=NEW_KEY, secret_key_previous=previous))
    yield rt
    rt.close()


def _seed(runtime: Runtime, locations: int) -> None:
    cipher = runtime.cipher
    with runtime.sessions.begin() as session:
        for n in range(locations):
            session.add(
                Location(
                    id=f"loc-{n:02d}",
                    crm_access_token=cipher.encrypt(f"crm-access-{n}"),
                    crm_refresh_token=cipher.encrypt(f"crm-refresh-{n}") if n % 3 else None,
                )
            )
        session.flush()
        for n in range(0, locations, 2):
            session.add(
                QboConnection(
                    location_id=f"loc-{n:02d}",
                    realm_id=f"realm-{n}",
                    active_realm_id=f"realm-{n}",
                    access_token=cipher.encrypt(f"qbo-access-{n}"),
                    refresh_token=cipher.encrypt(f"qbo-refresh-{n}"),
                )
            )


def _stored(runtime: Runtime) -> list[str]:
    values: list[str] = []
    with runtime.sessions() as session:
        for table in TOKEN_TABLES:
            for row in session.execute(select(*table.columns)).all():
                values.extend(value for value in row if value)
    return values


class Interrupted(Exception):
    pass


def test_rotate_key_re_encrypts_every_token_under_the_newest_key_and_resumes(
    old_runtime: Runtime, new_runtime: Runtime
) -> None:
    _seed(old_runtime, 7)  # 7 locations (11 tokens) + 4 connections (8 tokens)
    stored = _stored(old_runtime)
    assert len(stored) == 19
    newest_only = TokenCipher(NEW_KEY)

    def stop_after_first_batch(done: int, total: int) -> None:
        assert total == 11
        raise Interrupted

    with pytest.raises(Interrupted):
        rotate_tokens(new_runtime, batch_size=3, progress=stop_after_first_batch)
    midway = _stored(new_runtime)
    assert sum(newest_only.is_current(value) for value in midway) == 5  # the first batch's 3 rows, committed

    seen: list[tuple[int, int]] = []
    report = rotate_tokens(new_runtime, batch_size=3, progress=lambda done, total: seen.append((done, total)))
    assert (report.rows, report.rotated, report.already_current, report.unreadable) == (11, 14, 5, [])
    assert seen[-1] == (11, 11)
    plain = sorted(newest_only.decrypt(value) for value in _stored(new_runtime))
    assert plain == sorted(TokenCipher(OLD_KEY).decrypt(value) for value in stored)

    again = rotate_tokens(new_runtime, batch_size=3)
    assert (again.rotated, again.already_current) == (0, 19)


def test_rotation_never_overwrites_a_token_changed_meanwhile(old_runtime: Runtime, new_runtime: Runtime) -> None:
    _seed(old_runtime, 1)
    with new_runtime.sessions() as session:
        stale = session.execute(select(Location.crm_access_token)).scalar_one()
    assert stale is not None
    refreshed = new_runtime.cipher.encrypt("crm-access-refreshed")
    with new_runtime.sessions.begin() as session:
        location = session.get(Location, "loc-00")
        assert location is not None
        location.crm_access_token = refreshed
    report = RotationReport()
    with new_runtime.sessions.begin() as session:
        _rotate_one(session, new_runtime.cipher, TOKEN_TABLES[0], "loc-00", Location.crm_access_token, stale, report)
    assert report.changed_meanwhile == 1 and report.rotated == 0
    with new_runtime.sessions() as session:
        assert session.execute(select(Location.crm_access_token)).scalar_one() == refreshed


@pytest.mark.parametrize("backend", ["sqlite"])
def test_rotate_key_command_reports_progress_and_unreadable_tokens(
    old_runtime: Runtime, db_url: str, queue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(old_runtime, 2)
    monkeypatch.setenv("QBCONNECT_DATABASE_URL", db_url)
    monkeypatch.setenv("QBCONNECT_QUEUE_URL", queue_url)
    monkeypatch.setenv("QBCONNECT_SECRET_KEY", NEW_KEY)
    monkeypatch.setenv("QBCONNECT_SECRET_KEY_PREVIOUS", OLD_KEY)
    runner = CliRunner()
    done = runner.invoke(app, ["rotate-key", "--batch-size", "1"])
    assert done.exit_code == 0, done.output
    assert "5 tokens re-encrypted" in done.output and "0 already" in done.output
    # Without the old key, nothing can be read any more: the command says so and fails.
    with old_runtime.sessions.begin() as session:
        session.add(Location(id="loc-late", crm_access_token=TokenCipher("some-forgotten-key").encrypt("x")))
    monkeypatch.delenv("QBCONNECT_SECRET_KEY_PREVIOUS")
    failed = runner.invoke(app, ["rotate-key"])
    assert failed.exit_code == 1
    assert "locations:loc-late.crm_access_token" in failed.output and "5 already" in failed.output
