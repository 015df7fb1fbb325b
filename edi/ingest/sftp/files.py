"""The SFTP file system a partner sees: its own `<spool>/partners/<APP>/` as `/`, chrooted.

`/in` (upload, rename, list) and `/out` (list, download, delete). Nothing else exists for it:
`..`, absolute paths elsewhere, symbolic links (never followed, never created), names with
control characters, `/` or `\\`, and names starting with `.` are refused; mkdir, rmdir, setstat
and symlink too.

Upload completion. Closing a file is not proof that it is complete (a dropped connection also
closes it). So every upload is written to a hidden partial file `in/.upload-<uuid>.part` (intake
ignores dot names) and renamed atomically to `in/<name>` only when the client sends CLOSE; the
partial of an upload cut by a dropped connection is left as it is and removed by the
housekeeping after `partial_max_age`. An existing name is never overwritten (upload or rename).
A write past `[limits] max_flow_bytes` is refused at once and the partial deleted.

Limits that keep one partner from hurting the others: a name is at most 255 bytes once encoded
(checked at open, so the final rename cannot fail on it; the partial's own name is a fixed 45
bytes), a session holds at most `[sftp] max_handles_per_session` open files and folders, and a
failed or short write (disk full) fails the upload there and then. Every failure closes its
descriptor, removes its partial and is logged.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
import structlog
from paramiko.sftp import CMD_CLOSE, CMD_OPEN, CMD_OPENDIR, SFTP_BAD_MESSAGE

from edi.reports.downloads import record_download

if TYPE_CHECKING:
    from edi.ingest.sftp.server import Session, SftpService

log = structlog.get_logger("edi.sftp")

RECENT_SECONDS = 60.0  # how long a placed upload still answers stat() once intake took it
PARTIAL_PREFIX = ".upload-"
PARTIAL_SUFFIX = ".part"
AREAS = ("in", "out")

OK = paramiko.SFTP_OK
DENIED = paramiko.SFTP_PERMISSION_DENIED
NO_SUCH = paramiko.SFTP_NO_SUCH_FILE
FAILURE = paramiko.SFTP_FAILURE


class Denied(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


NAME_MAX_BYTES = 255  # a final path component, in bytes, on every usual file system


def valid_name(name: str) -> bool:
    """A file name a partner may use: no separator, no control character, no leading dot, at
    most 255 bytes once encoded (a 255-character name of accented letters is 500 bytes: the
    disk would refuse it only at the final rename, after the client was told all was well)."""
    return (
        0 < len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX_BYTES
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and not any(ord(c) < 32 or ord(c) == 127 for c in name)
    )


def virtual_parts(path: str) -> list[str]:
    """Split a client path (absolute or relative to `/`) into components; `..` is refused."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path) or "\\" in path:
        raise Denied(DENIED, "control_or_backslash")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Denied(DENIED, "dotdot")
    return parts


def partner_root(partners_root: Path, app: str) -> Path:
    """`partners/<APP>/` with its `in/` and `out/`, refusing any symbolic link on the way."""
    root = partners_root / app
    for folder in (root, root / "in", root / "out"):
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            os.mkdir(folder, 0o750)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise Denied(DENIED, "symlink_or_not_a_folder")
    return root


# --- SFTP subsystem ----------------------------------------------------------------------------


class SFTPSubsystem(paramiko.SFTPServer):
    """Adds what paramiko's server lacks: activity tracking, a CLOSE whose result reaches the
    client, and the difference between a client CLOSE and a dropped connection."""

    def __init__(self, channel, name, server, sftp_si=None, *, service: SftpService, session: Session):
        self.session = session
        self.max_handles = service.max_handles
        super().__init__(channel, name, server, FileSystem, service=service, session=session)

    def _process(self, t, request_number, msg):
        self.session.touch()
        if t in (CMD_OPEN, CMD_OPENDIR) and len(self.file_table) + len(self.folder_table) >= self.max_handles > 0:
            # one session holding thousands of descriptors would lock every partner out
            self.session.log("denied", op="open", reason="too_many_handles", limit=self.max_handles)
            self._send_status(request_number, FAILURE, f"too many open handles (limit {self.max_handles})")
            return
        if t != CMD_CLOSE:
            return super()._process(t, request_number, msg)
        handle = msg.get_binary()
        if handle in self.folder_table:
            del self.folder_table[handle]
            self._send_status(request_number, OK)
        elif handle in self.file_table:
            result = self.file_table.pop(handle).close()
            self._send_status(request_number, OK if result is None else result)
        else:
            self._send_status(request_number, SFTP_BAD_MESSAGE, "Invalid handle")

    def finish_subsystem(self):
        # Files still open here were never closed by the client: incomplete, never placed.
        for handle in self.file_table.values():
            if isinstance(handle, UploadHandle):
                handle.abort()
        try:
            super().finish_subsystem()
        finally:
            self.server.service.close_channel(self.session)


class FileSystem(paramiko.SFTPServerInterface):
    def __init__(self, server, *, service: SftpService, session: Session):
        super().__init__(server)
        self.service, self.sess = service, session
        self.root: Path | None = None

    def session_started(self):
        try:
            self.root = partner_root(self.service.partners_root, self.sess.app)
        except Denied as exc:  # partners/<APP> replaced by a link: serve nothing
            self.sess.log("denied", op="session", file=f"partners/{self.sess.app}", reason=exc.reason)
            return
        self.sess.log("sftp_start")

    # -- path mapping --

    def _deny(self, op: str, path: str, exc: Denied) -> int:
        self.sess.log("denied", op=op, file=path, reason=exc.reason)
        return exc.code

    def _resolve(self, path: str) -> tuple[str | None, str | None]:
        """(area, name): (None, None) for `/`, (area, None) for `/in` or `/out`."""
        parts = virtual_parts(path)
        if self.root is None:
            raise Denied(DENIED, "no_account_folder")
        if not parts:
            return None, None
        if parts[0] not in AREAS or len(parts) > 2:
            raise Denied(NO_SUCH, "outside")
        if len(parts) == 1:
            return parts[0], None
        if len(parts[1].encode("utf-8", "surrogateescape")) > NAME_MAX_BYTES:
            raise Denied(DENIED, "name_too_long")
        if not valid_name(parts[1]):
            raise Denied(DENIED, "bad_name")
        return parts[0], parts[1]

    def _folder(self, area: str) -> Path:
        folder = self.root / area
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode):
            raise Denied(DENIED, "symlink_or_not_a_folder")
        return folder

    def _file(self, area: str, name: str) -> tuple[Path, os.stat_result]:
        """An existing regular file (never a link) of the area."""
        path = self._folder(area) / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise Denied(NO_SUCH, "no_such_file") from None
        if not stat.S_ISREG(st.st_mode):
            raise Denied(NO_SUCH, "not_a_regular_file")
        return path, st

    @staticmethod
    def _dir_attr(name: str, st: os.stat_result | None = None) -> paramiko.SFTPAttributes:
        attr = paramiko.SFTPAttributes.from_stat(st) if st else paramiko.SFTPAttributes()
        attr.filename = name
        attr.st_mode = stat.S_IFDIR | 0o755
        return attr

    # -- reading the tree --

    def canonicalize(self, path):
        # Purely lexical, clamped at `/` (as a chrooted sshd does); touches nothing on disk.
        return posixpath.normpath("/" + (path or "")).replace("//", "/")

    def list_folder(self, path):
        try:
            area, name = self._resolve(path)
            if name is not None:
                raise Denied(NO_SUCH, "not_a_folder")
            if area is None:
                out = [self._dir_attr(a, os.lstat(self._folder(a))) for a in AREAS]
            else:
                out = []
                for entry in os.scandir(self._folder(area)):
                    if not valid_name(entry.name):
                        continue  # partial uploads and anything hidden
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        out.append(paramiko.SFTPAttributes.from_stat(st, entry.name))
            self.sess.log("list", file=path, count=len(out))
            return out
        except Denied as exc:
            return self._deny("list", path, exc)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def stat(self, path):
        try:
            area, name = self._resolve(path)
            if area is None:
                return self._dir_attr("/", os.lstat(self.root))
            if name is None:
                return self._dir_attr(area, os.lstat(self._folder(area)))
            try:
                _, st = self._file(area, name)
            except (Denied, FileNotFoundError):
                if area == "in" and (recent := self.sess.recent.get(name)) and time.monotonic() - recent[1] < RECENT_SECONDS:
                    return recent[0]
                raise
            return paramiko.SFTPAttributes.from_stat(st, name)
        except Denied as exc:
            if exc.code != NO_SUCH:
                return self._deny("stat", path, exc)
            return exc.code
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    lstat = stat

    # -- files --

    def open(self, path, flags, attr):
        try:
            area, name = self._resolve(path)
            if name is None:
                raise Denied(DENIED, "not_a_file")
            writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
            if area == "out":
                if writing:
                    raise Denied(DENIED, "out_is_read_only")
                return self._open_download(name)
            if not writing:
                raise Denied(DENIED, "in_is_write_only")
            if flags & os.O_APPEND:
                raise Denied(DENIED, "append_not_supported")
            return self._open_upload(name)
        except Denied as exc:
            return self._deny("open", path, exc)
        except OSError as exc:
            self.sess.log("denied", op="open", file=path, reason=exc.strerror)
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def _open_download(self, name: str):
        path, _ = self._file("out", name)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Denied(NO_SUCH, "not_a_regular_file")
            handle = DownloadHandle(self, name, fd, st.st_size)
        except BaseException:
            os.close(fd)
            raise
        self.sess.log("download_start", file=name, bytes=st.st_size)
        return handle

    def _open_upload(self, name: str):
        folder = self._folder("in")
        if os.path.lexists(folder / name):
            raise Denied(FAILURE, "exists")
        partial = folder / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o640)
        try:
            handle = UploadHandle(self, name, fd, partial)
            with self.service._lock:
                self.service.active_partials.add(str(partial))
        except BaseException:
            os.close(fd)
            os.unlink(partial)
            raise
        self.sess.log("upload_start", file=name)
        return handle

    def remove(self, path):
        try:
            area, name = self._resolve(path)
            if area != "out" or name is None:
                raise Denied(DENIED, "remove_only_in_out")
            file, st = self._file("out", name)
            os.unlink(file)
            self.sess.log("delete", file=name, bytes=st.st_size)
            return OK
        except Denied as exc:
            return self._deny("remove", path, exc)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def rename(self, oldpath, newpath):
        try:
            area_a, old = self._resolve(oldpath)
            area_b, new = self._resolve(newpath)
            if area_a != "in" or area_b != "in" or old is None or new is None:
                raise Denied(DENIED, "rename_only_in_in")
            src, st = self._file("in", old)
            dst = src.parent / new
            with self.service.app_lock(self.sess.app):
                if os.path.lexists(dst):
                    raise Denied(FAILURE, "exists")
                os.rename(src, dst)
            self.sess.log("rename", file=new, previous=old, bytes=st.st_size)
        except Denied as exc:
            return self._deny("rename", f"{oldpath} -> {newpath}", exc)
        except OSError as exc:
            self.sess.log("denied", op="rename", file=f"{oldpath} -> {newpath}", reason=exc.strerror)
            return paramiko.SFTPServer.convert_errno(exc.errno)
        self.service.placed(self.sess, dst)
        return OK

    posix_rename = rename  # never overwrites either

    def _refused(self, op: str, path: str) -> int:
        self.sess.log("denied", op=op, file=path, reason="not_allowed")
        return DENIED

    def mkdir(self, path, attr):
        return self._refused("mkdir", path)

    def rmdir(self, path):
        return self._refused("rmdir", path)

    def chattr(self, path, attr):
        return self._refused("setstat", path)

    def symlink(self, target_path, path):
        return self._refused("symlink", path)

    def readlink(self, path):
        return self._refused("readlink", path)


class FileHandle(paramiko.SFTPHandle):
    """What a download and an upload handle share: fstat of the open file, no chattr."""

    name: str
    fd: int

    def stat(self):
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.fd), self.name)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def chattr(self, attr):
        return DENIED


def _add_range(ranges: list[list[int]], start: int, end: int) -> None:
    """Merge [start, end) into sorted, disjoint `ranges` (in place)."""
    merged = [start, end]
    kept = []
    for r in ranges:
        if r[1] < merged[0] or r[0] > merged[1]:
            kept.append(r)
        else:
            merged = [min(r[0], merged[0]), max(r[1], merged[1])]
    kept.append(merged)
    kept.sort()
    ranges[:] = kept


class DownloadHandle(FileHandle):
    """A report being read. It counts as retrieved only when every byte of it was read: the
    ranges read are merged, so reading the first kilobyte a hundred times is not a download."""

    def __init__(self, iface: FileSystem, name: str, fd: int, size: int):
        super().__init__()
        self.iface, self.name, self.fd, self.size = iface, name, fd, size
        self.ranges: list[list[int]] = []
        self.closed = False

    @property
    def sent(self) -> int:
        """Distinct bytes read."""
        return sum(end - start for start, end in self.ranges)

    def read(self, offset, length):
        try:
            data = os.pread(self.fd, length, offset)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        if data:
            _add_range(self.ranges, offset, offset + len(data))
        return data

    def write(self, offset, data):
        return DENIED

    def close(self):
        if self.closed:
            return OK
        self.closed = True
        os.close(self.fd)
        sess = self.iface.sess
        sent = self.sent
        complete = sent >= self.size
        sess.log("download", file=self.name, bytes=sent, complete=complete)
        if sent or complete:
            try:
                record_download(self.iface.service.url, sess.app, self.name, sess.id, sess.address, sent,
                                complete)
            except Exception:
                log.exception("download_record_failed", action="download_record_failed", partner=sess.app,
                              file=self.name)
        return OK


class UploadHandle(FileHandle):
    """Writes go to the hidden partial; only a client CLOSE places the file under its name.

    Any failed or short write (disk full, quota, I/O error) fails the whole upload at once: the
    partial is deleted, the client gets the error on that write and on CLOSE, and nothing is
    handed to intake (so the FLOWID stays free for the real upload)."""

    def __init__(self, iface: FileSystem, name: str, fd: int, partial: Path):
        super().__init__()
        self.iface, self.name, self.fd, self.partial = iface, name, fd, partial
        self.size = 0
        self.failed = False
        self.done = False

    def write(self, offset, data):
        if self.failed or self.done:
            return FAILURE
        end = offset + len(data)
        limit = self.iface.service.max_bytes
        if offset > limit:
            # a write far past the limit (sparse file) is an abuse, not an oversize flow: no report
            self._fail("sparse_past_limit", end)
            return FAILURE
        if end > limit:
            self._oversize(end)
            return FAILURE
        try:
            written = os.pwrite(self.fd, data, offset)
        except OSError as exc:
            self._fail(exc.strerror or "write_error", end)
            return paramiko.SFTPServer.convert_errno(exc.errno)
        if written != len(data):
            self._fail("short_write", end, written=written)
            return FAILURE
        self.size = max(self.size, end)
        return OK

    def read(self, offset, length):
        return DENIED

    def _release(self, keep_partial: bool) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass  # the descriptor is released by the kernel even when close reports an error
            self.fd = -1
        if not keep_partial:
            try:
                os.unlink(self.partial)
            except FileNotFoundError:
                pass
        with self.iface.service._lock:
            self.iface.service.active_partials.discard(str(self.partial))

    def _fail(self, reason: str, size: int, **kw) -> None:
        """The upload cannot complete: drop the partial and say why."""
        self.failed = True
        self._release(keep_partial=False)
        self.iface.sess.log("upload_failed", file=self.name, bytes=size, reason=reason, **kw)

    def _oversize(self, size: int) -> None:
        self.failed = True
        self._release(keep_partial=False)
        sess, service = self.iface.sess, self.iface.service
        sess.log("upload_refused", file=self.name, bytes=size, reason="oversize", limit=service.max_bytes)
        callback = service.on_oversize
        if callback is None:
            return
        if not service.oversize_report_due(sess.app):
            sess.log("oversize_report_skipped", file=self.name, reason="rate_limited")
            return
        try:
            callback(sess.app, self.name, size)
        except Exception:
            log.exception("on_oversize_failed", action="on_oversize_failed", partner=sess.app, file=self.name)

    def abort(self) -> None:
        """The connection ended without CLOSE: keep the partial for the delayed cleanup."""
        if self.done or self.failed:
            return
        self.failed = True
        self._release(keep_partial=True)
        self.iface.sess.log("upload_aborted", file=self.name, bytes=self.size, partial=self.partial.name)

    def close(self):
        if self.done:
            return OK
        if self.failed:
            self.done = True
            return FAILURE
        self.done = True
        sess, service = self.iface.sess, self.iface.service
        dst = self.partial.parent / self.name
        try:
            os.fsync(self.fd)  # a delayed write error (disk full on flush) surfaces here
            with service.app_lock(sess.app):
                if os.path.lexists(dst):
                    self._release(keep_partial=False)
                    sess.log("upload_refused", file=self.name, bytes=self.size, reason="exists")
                    return FAILURE
                os.rename(self.partial, dst)
        except OSError as exc:
            self._fail(exc.strerror or "close_error", self.size)
            return paramiko.SFTPServer.convert_errno(exc.errno)
        self._release(keep_partial=True)
        sess.log("upload", file=self.name, bytes=self.size)
        service.placed(sess, dst)
        return OK
