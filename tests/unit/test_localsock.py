"""Owner-only unix sockets (:mod:`meridio.kernel.localsock`): settings, directory rules, the mode a socket is
created with, and the relay in front of a server. Real sockets in ``tmp_path``; refusing another uid
needs a second uid and is in ``tests/netns/test_local_sockets.py``."""
from __future__ import annotations

import asyncio
import os
import pathlib
import stat

import pytest

from meridio.common.settings import SettingsError
from meridio.kernel import localsock


def test_socket_settings_parse_uids_and_a_group_by_number() -> None:
    assert localsock.access_from(" 1000, 1001 ,", "", prefix="NSM_") == localsock.Access(frozenset({1000, 1001}))
    access = localsock.access_from("", "0", prefix="NSM_")
    assert access.gid == 0 and access.mode == 0o660 and access.dir_mode == 0o750
    assert localsock.OWNER_ONLY.mode == 0o600 and localsock.OWNER_ONLY.dir_mode == 0o700


@pytest.mark.parametrize("uids,group,message", [
    ("1000,alice", "", "NSM_SOCKET_UIDS: 'alice' is not a uid"),
    ("-1", "", "NSM_SOCKET_UIDS: '-1' is not a uid"),
    ("", "no-such-group-" + "x" * 200, "NSM_SOCKET_GROUP: no group named 'no-such-group-xxx"),
], ids=["name-as-uid", "negative", "unknown-group"])
def test_bad_socket_settings_name_the_variable_and_quote_little(uids: str, group: str, message: str) -> None:
    with pytest.raises(SettingsError, match="^" + message) as info:
        localsock.access_from(uids, group, prefix="NSM_")
    assert len(str(info.value)) < 140


def test_root_and_this_process_may_call_and_the_listed_uids_too() -> None:
    access = localsock.Access(frozenset({4242}))
    assert access.allows(0) and access.allows(os.geteuid()) and access.allows(4242)
    assert not access.allows(4243)


def test_a_missing_directory_is_created_owner_only(tmp_path: pathlib.Path) -> None:
    sock = tmp_path / "a" / "b" / "link.sock"
    localsock.prepare_dir(str(sock), localsock.OWNER_ONLY)
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700


def test_a_world_writable_directory_is_refused_naming_it(tmp_path: pathlib.Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(localsock.UnsafeDirectory, match=f"^{shared}: a socket directory must not be writable by "
                                                         f"everyone \\(mode 1777\\)"):
        localsock.prepare_dir(str(shared / "x.sock"), localsock.OWNER_ONLY)


async def test_a_socket_bound_in_private_umask_is_born_0600(tmp_path: pathlib.Path) -> None:
    os.umask(old := os.umask(0))
    path = str(tmp_path / "s.sock")
    with localsock.private_umask():
        server = await asyncio.start_unix_server(lambda r, w: None, path=path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert os.umask(old) == old  # the block gave the process its umask back
    finally:
        server.close()
        await server.wait_closed()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(b"echo:" + data)
        await writer.drain()
    writer.close()


async def test_the_guarded_listener_relays_an_allowed_callers_bytes_to_the_server_behind_it(
        tmp_path: pathlib.Path) -> None:
    guard = localsock.GuardedListener(str(tmp_path / "api" / "tap.sock"))
    guard.prepare()
    with localsock.private_umask():
        backend = await asyncio.start_unix_server(_echo, path=guard.backend)
    await guard.start()
    try:
        assert stat.S_IMODE(os.stat(guard.path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(guard.backend).st_mode) == 0o600
        reader, writer = await asyncio.open_unix_connection(guard.path)
        writer.write(b"hello")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"echo:hello"
        writer.close()
    finally:
        await guard.close()
        backend.close()
        await backend.wait_closed()
    assert not os.path.exists(guard.path) and not os.path.exists(guard.backend)


def test_a_file_that_is_not_a_socket_is_not_removed_to_make_room(tmp_path: pathlib.Path) -> None:
    (tmp_path / "tap.sock").write_text("precious")
    guard = localsock.GuardedListener(str(tmp_path / "tap.sock"))
    with pytest.raises(localsock.UnsafeDirectory, match="exists and is not a socket"):
        guard.prepare()
    assert (tmp_path / "tap.sock").read_text() == "precious"
