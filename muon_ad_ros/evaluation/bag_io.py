"""Reading camera frames from rosbags and writing stylized ones, with the pure-Python ``rosbags``.

No rclpy: messages are (de)serialized with a rosbags typestore, so this runs on a laptop without ROS.

Reading: rosbag2 directories, single ``.mcap`` / ``.db3`` files and ROS 1 ``.bag`` files, recognised by
their first bytes rather than their name. Every way a file can fail to be a readable bag becomes a
`BagError` with one clear sentence; a frame that cannot be decoded is a counted skip, not an error.

Writing: `OutputBag` writes a rosbag2 (MCAP by default) under a temporary name next to the target and
renames it only once closed cleanly, so an interrupted run never leaves a bag that looks complete.
"""
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from muon_ad_ros.core.errors import ImageFormatError, MuonAdError
from muon_ad_ros.core.image_codec import (decode_compressed, encode_compressed, fields_to_rgb8,
                                          rgb8_to_fields)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)

# The typestore used for everything we write, and to read bags that carry no message definitions.
TYPESTORE = get_typestore(Stores.ROS2_KILTED)

MAGIC = {  # first bytes of each storage format
    b"#ROSBAG V2.0\n": "rosbag1",
    b"\x89MCAP0\r\n": "mcap",
    b"SQLite format 3\x00": "sqlite3",
}
SUFFIX = {"rosbag1": ".bag", "mcap": ".mcap", "sqlite3": ".db3"}
STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(MuonAdError):
    """A bag is missing, unreadable, truncated, or lacks what was asked of it."""


# ----------------------------------------------------------------------------------------------------
# reading


def sniff_format(path):
    """'rosbag1' | 'mcap' | 'sqlite3' | 'rosbag2-dir' from the file's content; BagError otherwise."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "metadata.yaml").is_file():
            return "rosbag2-dir"
        storage = sorted(p.name for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
        hint = f" (pass one of its storage files instead: {', '.join(storage)})" if storage else ""
        raise BagError(f"{path}: directory without metadata.yaml is not a rosbag2{hint}")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise BagError(f"{path}: cannot read: {e.strerror}") from None
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    raise BagError(f"{path}: not a rosbag (expected a ROS 1 .bag, an MCAP or a sqlite3 rosbag2)")


@dataclass
class TopicSummary:
    name: str
    msgtype: str
    count: int


@dataclass
class Frame:
    """One image message of the bag, decoded (``rgb``) or skipped (``rgb`` None, ``skip`` says why)."""
    topic: str
    msgtype: str           # IMAGE or COMPRESSED
    timestamp: int         # bag (receive) time, ns
    stamp: tuple           # header stamp (sec, nanosec)
    frame_id: str
    encoding: str          # Image encoding, or CompressedImage format
    raw: bytes             # serialized message as stored (CDR for rosbag2, ROS 1 for .bag)
    rgb: object = None     # HxWx3 uint8, None when skipped
    skip: str = None       # reason of a skip
    decode_ms: float = 0.0


class BagReader:
    """Opens a bag of any supported format; use as a context manager.

    >>> with BagReader("run.mcap") as bag:
    ...     for frame in bag.frames(["/camera/image_raw"]): ...
    """

    def __init__(self, path):
        self.path = Path(path)
        self.format = sniff_format(self.path)
        self.is_ros1 = self.format == "rosbag1"
        self._tmpdir = None
        self._reader = None

    def __enter__(self):
        path = self.path
        # AnyReader picks the reader from the file name, so a bag named otherwise is given an alias.
        suffix = SUFFIX.get(self.format)
        if suffix and path.suffix != suffix:
            self._tmpdir = tempfile.mkdtemp(prefix="muon_ad_bag_")
            alias = Path(self._tmpdir) / ("input" + suffix)
            alias.symlink_to(path.resolve())
            path = alias
        try:
            self._reader = AnyReader([path], default_typestore=TYPESTORE)
            self._reader.open()
        except (AnyReaderError, FileNotFoundError, OSError, KeyError, ValueError) as e:
            self._cleanup()
            raise BagError(f"{self.path}: cannot open bag ({_describe(e)}); is it truncated "
                           "or still being recorded?") from None
        return self

    def __exit__(self, *exc):
        try:
            if self._reader is not None and self._reader.stack is not None:
                self._reader.close()
        finally:
            self._cleanup()
        return False

    def _cleanup(self):
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def topics(self):
        """Every topic as TopicSummary, sorted by name."""
        return [TopicSummary(name, info.msgtype or "(mixed types)", info.msgcount)
                for name, info in sorted(self._reader.topics.items())]

    def image_topics(self):
        """The topics carrying sensor_msgs Image or CompressedImage."""
        return [t for t in self.topics() if t.msgtype in IMAGE_TYPES]

    def check_topics(self, names):
        """Raise BagError naming the bag's image topics if a name is absent or not an image topic."""
        by_name = {t.name: t for t in self.topics()}
        listing = format_topic_list(self.image_topics())
        for name in names:
            if name not in by_name:
                raise BagError(f"topic {name!r} is not in {self.path}; image topics: {listing}")
            if by_name[name].msgtype not in IMAGE_TYPES:
                raise BagError(f"topic {name!r} has unsupported type {by_name[name].msgtype} "
                               f"(want {IMAGE} or {COMPRESSED}); image topics: {listing}")

    def frames(self, names):
        """Yield a Frame per message of the given image topics, in bag order (receive time)."""
        self.check_topics(names)
        conns = [c for c in self._reader.connections if c.topic in names]
        messages = self._reader.messages(connections=conns)
        while True:
            try:
                conn, timestamp, raw = next(messages)
            except StopIteration:
                return
            except (AnyReaderError, OSError, KeyError, ValueError, EOFError) as e:
                raise BagError(f"{self.path}: bag ends early or is corrupt ({_describe(e)})") from None
            yield self._decode(conn.topic, conn.msgtype, timestamp, bytes(raw))

    def original_cdr(self, frame):
        """The frame's message as ROS 2 CDR: the stored bytes for rosbag2, re-serialized for ROS 1
        (Image and CompressedImage have the same fields in both, bar the header's ``seq``)."""
        if not self.is_ros1:
            return frame.raw
        try:
            msg = self._reader.deserialize(frame.raw, frame.msgtype)
        except (AnyReaderError, ValueError, IndexError, KeyError) as e:
            raise BagError(f"cannot convert a {frame.msgtype} on {frame.topic}: {_describe(e)}") \
                from None
        header = _header(frame.stamp, frame.frame_id)
        if frame.msgtype == IMAGE:
            out = TYPESTORE.types[IMAGE](header=header, height=msg.height, width=msg.width,
                                         encoding=msg.encoding, is_bigendian=msg.is_bigendian,
                                         step=msg.step, data=_as_uint8(msg.data))
        else:
            out = TYPESTORE.types[COMPRESSED](header=header, format=msg.format,
                                              data=_as_uint8(msg.data))
        return TYPESTORE.serialize_cdr(out, frame.msgtype)

    def _decode(self, topic, msgtype, timestamp, raw):
        t0 = time.perf_counter()
        try:
            msg = self._reader.deserialize(raw, msgtype)
        except (AnyReaderError, ValueError, IndexError, KeyError) as e:
            return Frame(topic, msgtype, timestamp, (0, 0), "", "", raw,
                         skip=f"undeserializable message ({_describe(e)})")
        stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
        frame = Frame(topic, msgtype, timestamp, stamp, msg.header.frame_id,
                      msg.encoding if msgtype == IMAGE else msg.format, raw)
        try:
            if msgtype == IMAGE:
                frame.rgb = fields_to_rgb8(msg.height, msg.width, msg.encoding, msg.step,
                                           msg.is_bigendian, msg.data)
            else:
                frame.rgb = decode_compressed(msg.format, msg.data)
        except ImageFormatError as e:
            frame.skip = f"undecodable frame ({e})"
        frame.decode_ms = (time.perf_counter() - t0) * 1e3
        return frame


def format_topic_list(topics):
    """'/a (sensor_msgs/msg/Image, 10 msgs), ...' or 'none'."""
    return ", ".join(f"{t.name} ({t.msgtype}, {t.count} msgs)" for t in topics) or "none"


def _describe(err):
    return str(err).strip() or type(err).__name__


# ----------------------------------------------------------------------------------------------------
# writing


def _header(stamp, frame_id):
    Header = TYPESTORE.types["std_msgs/msg/Header"]
    Time = TYPESTORE.types["builtin_interfaces/msg/Time"]
    return Header(stamp=Time(sec=stamp[0], nanosec=stamp[1]), frame_id=frame_id)


def serialize_image(rgb, stamp, frame_id, encoding="rgb8"):
    """HxWx3 uint8 RGB -> CDR bytes of a sensor_msgs/msg/Image with the given header."""
    f = rgb8_to_fields(rgb, encoding)
    msg = TYPESTORE.types[IMAGE](header=_header(stamp, frame_id), height=f.height, width=f.width,
                                 encoding=f.encoding, is_bigendian=f.is_bigendian, step=f.step,
                                 data=_as_uint8(f.data))
    return TYPESTORE.serialize_cdr(msg, IMAGE)


def serialize_compressed(rgb, stamp, frame_id, fmt="jpeg", quality=90):
    """HxWx3 uint8 RGB -> CDR bytes of a sensor_msgs/msg/CompressedImage."""
    format_str, data = encode_compressed(rgb, fmt=fmt, quality=quality)
    msg = TYPESTORE.types[COMPRESSED](header=_header(stamp, frame_id), format=format_str,
                                      data=_as_uint8(data))
    return TYPESTORE.serialize_cdr(msg, COMPRESSED)


def _as_uint8(data):
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(bytes(data), dtype=np.uint8)


def storage_for(path, storage=None):
    """The output storage: as asked, else from the name (``.db3`` -> sqlite3), else MCAP."""
    suffix = Path(path).suffix
    if storage is None:
        return "sqlite3" if suffix == ".db3" else "mcap"
    if storage not in STORAGE:
        raise BagError(f"unknown output storage {storage!r} (choose from {', '.join(STORAGE)})")
    if suffix in (".mcap", ".db3") and suffix != SUFFIX[storage]:
        raise BagError(f"output {path} is named {suffix} but --storage is {storage}")
    return storage


# Written into every bag directory this tool makes (and its partial folder while it is written):
# ``--overwrite`` replaces a directory only when it holds this marker, never any other directory.
OUTPUT_MARKER = ".muon_ad_eval_bag"
_PARTIAL = ".partial-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True


def remove_stale_partials(directory):
    """Delete ``.<name>.partial-<pid>`` folders (with our marker) left by runs that were killed
    (SIGKILL, power loss: no ``finally`` ran) and whose process is gone. Returns what was removed."""
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        name, _, pid = entry.name.rpartition(_PARTIAL)
        if (not name.startswith(".") or not pid.isascii() or not pid.isdigit() or entry.is_symlink()
                or not entry.is_dir() or not (entry / OUTPUT_MARKER).is_file() or _pid_alive(int(pid))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def check_replaceable(path, storage):
    """BagError unless ``path`` is something ``--overwrite`` may delete: a bag directory this tool
    wrote (it holds OUTPUT_MARKER) or a single bag file of the output's storage (checked by its
    first bytes, not its name). Never a symlink, a home directory or any other folder."""
    path = Path(path)
    if path.is_symlink():
        raise BagError(f"{path} is a symbolic link; --overwrite replaces only a bag (remove it yourself)")
    if path.is_dir():
        if (path / OUTPUT_MARKER).is_file() and (path / "metadata.yaml").is_file():
            return
        raise BagError(f"{path} is a directory that muon-ad eval-bag did not write; --overwrite replaces "
                       "only such a bag or a single .mcap/.db3 file (choose another --out)")
    if path.suffix == SUFFIX[storage]:
        try:
            if sniff_format(path) == storage:
                return
        except BagError:
            pass
    raise BagError(f"{path} is not a {SUFFIX[storage]} bag file; --overwrite replaces only a bag "
                   "(choose another --out)")


class OutputBag:
    """A rosbag2 written inside ``.<name>.partial-<pid>/`` next to ``path`` and moved to ``path`` on a
    clean exit. ``path`` named ``*.mcap`` / ``*.db3`` becomes that single storage file (``ros2 bag``
    and rosbags read one without metadata.yaml); any other name, a rosbag2 directory, marked with
    OUTPUT_MARKER as written by this tool.

    On any exception (KeyboardInterrupt included) the partial bag is deleted, so ``path`` only ever
    holds a complete bag; partial folders of killed runs are removed by the next run. ``path`` must
    not exist unless ``overwrite``, and even then only a bag (check_replaceable) is replaced.
    """

    def __init__(self, path, storage=None, overwrite=False):
        self.path = Path(path)
        self.storage = storage_for(self.path, storage)
        self.single_file = self.path.suffix == SUFFIX[self.storage]
        if self.path.exists() or self.path.is_symlink():
            if not overwrite:
                raise BagError(f"{self.path} exists already (use --overwrite to replace it)")
            check_replaceable(self.path, self.storage)
        if not self.path.parent.is_dir():
            raise BagError(f"{self.path.parent}: output directory does not exist")
        self.tmp_dir = self.path.parent / f".{self.path.name}{_PARTIAL}{os.getpid()}"
        # rosbags names the storage file after the bag directory: name it so the file ends right
        self.bag_dir = self.tmp_dir / (self.path.stem if self.single_file else self.path.name)
        self._writer = None
        self._conns = {}
        self.counts = {}

    def __enter__(self):
        remove_stale_partials(self.path.parent)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        try:
            self.tmp_dir.mkdir()
            (self.tmp_dir / OUTPUT_MARKER).write_text("partial output of muon-ad eval-bag\n")
            self._writer = Writer(self.bag_dir, version=9, storage_plugin=STORAGE[self.storage])
            self._writer.open()
        except (WriterError, OSError) as e:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            raise BagError(f"cannot write {self.path}: {_describe(e)}") from None
        return self

    def write(self, topic, msgtype, timestamp, cdr):
        """Append one CDR-serialized message; the connection is created on first use."""
        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            self.counts[topic] = 0
        self._writer.write(self._conns[topic], timestamp, cdr)
        self.counts[topic] += 1

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._writer.close()
                if not self.single_file:
                    (self.bag_dir / OUTPUT_MARKER).write_text("written by muon-ad eval-bag\n")
                if self.path.exists():  # overwrite: only now that the new bag is complete
                    check_replaceable(self.path, self.storage)   # it may have changed meanwhile
                    shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
                done = self.bag_dir / (self.bag_dir.name + SUFFIX[self.storage]) if self.single_file \
                    else self.bag_dir
                os.replace(done, self.path)
            else:
                self._writer.abort()
        finally:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        return False
