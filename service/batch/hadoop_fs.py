"""The files of a Spark run, through the Hadoop FileSystem API of the driver's JVM.

Whatever Spark reads and writes (local disk, HDFS, ``s3a://``, ``abfss://``, ``gs://`` with their Hadoop
connectors and the session's ``spark.hadoop.*`` configuration), the driver lists, inspects, renames and
publishes the same way: through ``org.apache.hadoop.fs.FileSystem`` over py4j, never Python's ``open``. Only
names and small byte ranges (CSV headers, Parquet footers, the manifest) cross py4j; the data never does.

Paths are Hadoop path strings (``file:/data/in dir/a.csv``, ``s3a://bucket/key``), not URL-encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from features.errors import LenriskError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_GLOB = re.compile(r"[*?\[\]{}\\]")


class FileSystemError(LenriskError):
    """A file system refused an operation (no such scheme, no permission, an unreachable store...)."""


@contextmanager
def _refused(what: str, path: str) -> Iterator[None]:
    """Turn the JVM's exception into :class:`FileSystemError`, with its class and first line (a path or a
    reason; file contents never reach these calls)."""
    from py4j.protocol import Py4JJavaError

    try:
        yield
    except Py4JJavaError as err:
        java = err.java_exception
        reason = f"{java.getClass().getSimpleName()}: {str(java.getMessage()).splitlines()[0]}"
        raise FileSystemError(f"cannot {what} {path} ({reason})") from err


@dataclass(frozen=True)
class FileInfo:
    """A file: its qualified Hadoop path, size in bytes and modification time (ms since the epoch)."""

    path: str
    size: int
    modified: int


def spark_file_key(file_path: str) -> str:
    """The Hadoop path string of a ``_metadata.file_path`` value (a URL-encoded URI, ``file:/`` or
    ``file:///``), so it can be matched with :attr:`FileInfo.path`."""
    text = unquote(file_path)
    return "file:" + text.removeprefix("file://") if text.startswith("file:///") else text


def escape_glob(path: str) -> str:
    """``path`` with Hadoop's glob characters escaped, so Spark reads exactly that file."""
    return _GLOB.sub(lambda m: "\\" + m.group(0), path)


def is_hidden(name: str) -> bool:
    """Names Spark's file sources skip (``_SUCCESS``, ``.crc``, ``_temporary``...)."""
    return name.startswith(("_", "."))


class HadoopFS:
    """The Hadoop file systems of ``spark``'s driver."""

    def __init__(self, spark: SparkSession) -> None:
        self._jvm: Any = spark._jvm  # type: ignore[attr-defined]
        self._conf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]

    def _path(self, path: str) -> tuple[Any, Any]:
        jpath = self._jvm.org.apache.hadoop.fs.Path(path)
        return jpath.getFileSystem(self._conf), jpath

    def qualify(self, path: str) -> str:
        """``path`` made absolute on its file system (a bare path is the default FS, usually ``file:``)."""
        with _refused("use", path):
            fs, jpath = self._path(path)
            return fs.makeQualified(jpath).toString()

    def glob(self, pattern: str) -> list[str]:
        """Qualified paths matching a Hadoop glob (a plain path matches itself when it exists)."""
        with _refused("list", pattern):
            fs, jpath = self._path(pattern)
            found = fs.globStatus(jpath)
            return sorted(status.getPath().toString() for status in (found or []))

    def is_dir(self, path: str) -> bool:
        with _refused("read", path):
            fs, jpath = self._path(path)
            return bool(fs.exists(jpath)) and bool(fs.getFileStatus(jpath).isDirectory())

    def exists(self, path: str) -> bool:
        with _refused("read", path):
            fs, jpath = self._path(path)
            return bool(fs.exists(jpath))

    def info(self, path: str) -> FileInfo:
        with _refused("read", path):
            fs, jpath = self._path(path)
            status = fs.getFileStatus(jpath)
            return FileInfo(status.getPath().toString(), status.getLen(), status.getModificationTime())

    def files_under(self, folder: str) -> Iterator[FileInfo]:
        """Every file below ``folder``, recursively, skipping hidden names (and everything under them)."""
        with _refused("list", folder):
            fs, jpath = self._path(folder)
            base = fs.makeQualified(jpath).toString().rstrip("/")
            found = fs.listFiles(jpath, True)
            while found.hasNext():
                status = found.next()
                path = status.getPath().toString()
                if not any(is_hidden(part) for part in path[len(base) + 1 :].split("/")):
                    yield FileInfo(path, status.getLen(), status.getModificationTime())

    def names(self, folder: str) -> list[str]:
        """Names of the entries directly in ``folder`` (hidden ones too)."""
        with _refused("list", folder):
            fs, jpath = self._path(folder)
            return sorted(status.getPath().getName() for status in fs.listStatus(jpath))

    def read(self, path: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``path`` from ``offset``."""
        with _refused("read", path):
            fs, jpath = self._path(path)
            stream = fs.open(jpath)
            try:
                stream.seek(offset)
                return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream, length))
            finally:
                stream.close()

    def write(self, path: str, data: bytes) -> None:
        """Create ``path`` (it must not exist) holding ``data``."""
        with _refused("write", path):
            fs, jpath = self._path(path)
            stream = fs.create(jpath, False)
            try:
                stream.write(bytearray(data))
            finally:
                stream.close()

    def mkdirs(self, path: str) -> None:
        with _refused("create", path):
            fs, jpath = self._path(path)
            if not fs.mkdirs(jpath):
                raise FileSystemError(f"cannot create {path}")

    def delete(self, path: str) -> None:
        """Remove ``path`` (recursively), if it exists; :class:`FileSystemError` if it is still there."""
        with _refused("delete", path):
            fs, jpath = self._path(path)
            fs.delete(jpath, True)
            if fs.exists(jpath):
                raise FileSystemError(f"cannot delete {path}")

    def rename(self, source: str, target: str) -> None:
        """Move ``source`` to ``target``, which must not exist (Hadoop would move it inside a folder)."""
        with _refused("rename", source):
            fs, jsource = self._path(source)
            jtarget = self._jvm.org.apache.hadoop.fs.Path(target)
            if fs.exists(jtarget) or not fs.rename(jsource, jtarget):
                raise FileSystemError(f"cannot rename {source} to {target}")
