"""Annotation files -> video records.

One parser per file style, each turning a file into :class:`AnnotationEntry` objects (the video's
name, where it may lie under the dataset root, its label as written), and one shared step,
:func:`load_annotation`, that maps label names to class ids and finds the videos on disk. The
style is recognised from the file itself, so every dataset accepts every style:

* **Kinetics CSV** (official): header ``label,youtube_id,time_start,time_end,split`` (test CSVs may
  lack ``label``). The video is ``{youtube_id}_{time_start:06d}_{time_end:06d}.{mp4|webm|mkv|avi|...}`` (any container of
  :data:`KINETICS_EXTENSIONS`),
  directly under the root or in a per-label folder named as public downloaders write it (the label
  as is, or with spaces replaced by underscores).
* **path-label list**: one video per line, the label last, separated by whitespace or by a comma
  (``path,label_name`` CSVs, optional ``path,label`` header). Paths may contain spaces. The label is
  a class id (an integer) or a class name; ``-1`` means unlabelled. A space-separated line whose
  label is a class name of several words (``videos/moving left/x.mp4 moving left``) takes the
  longest ending that is a class name (preferring a split whose video exists).
* **SSv2 JSON** (official): a list of ``{"id", "label", "template", "placeholders"}``. The class is
  the template without its ``[`` ``]``; the video is ``{id}.webm`` (or ``.mp4``, or another container). ``test.json``
  (only ``id``) is unlabelled.

Class lists come from :func:`read_class_names` (one name per line, or SSv2's ``labels.json``) or,
for Kinetics, from :func:`annotation_class_names` (the sorted label names of the training file), so
class ids are the same in every split.

Every malformed input raises :class:`AnnotationError` with one message that names the file (and
line or entry) and the fix; so does a class name listed twice. Videos listed but missing on disk are
skipped and reported once, and so are videos listed twice (each is used once, with its first label).
With ``confine=True`` (``data.confine_to_root``) a video outside the dataset root is refused.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from ..errors import UserError

log = logging.getLogger(__name__)

KINETICS_COLUMNS = ("youtube_id", "time_start", "time_end")
# Containers FFmpeg reads that videos come in; a Kinetics/SSv2 video is looked for in them in this
# order (the downloaders' usual three first).
VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "avi", "mov", "m4v", "flv", "mpg", "mpeg", "ts", "3gp", "ogv", "wmv")
KINETICS_EXTENSIONS = VIDEO_EXTENSIONS
SSV2_EXTENSIONS = ("webm", "mp4") + KINETICS_EXTENSIONS[2:]
# Files that ``eval.py predict=[...]`` expands into their videos instead of decoding them.
ANNOTATION_SUFFIXES = (".csv", ".json", ".txt", ".lst", ".list")
# Header words of a path-label CSV (``path,label``): a first line made of these is skipped.
_PATH_HEADERS = {"path", "video", "video_path", "filename", "file", "name", "id", "youtube_id"}
_LABEL_HEADERS = {"label", "label_name", "label_id", "class", "class_name", "class_id", "classname"}
MISSING_SHOWN = 5  # missing videos named in the report
DUPLICATES_SHOWN = 3  # duplicate entries named in the report


# data.name -> where its class list comes from when data.labels is not set ("train_ann": the sorted
# label names of the training annotation; None: data.labels is required).
DATASETS = {"motion": None, "list": None, "kinetics400": "train_ann", "kinetics600": "train_ann",
            "kinetics700": "train_ann", "ssv2": None}


class AnnotationError(UserError, ValueError):
    """An annotation or class-name file is missing or malformed (the message names it and the fix)."""


@dataclass(frozen=True)
class VideoRecord:
    path: str   # absolute or relative to the dataset root
    label: int  # -1 when unknown (prediction)


@dataclass(frozen=True)
class AnnotationEntry:
    """One video as an annotation file describes it, before its label becomes a class id and its
    file is looked up on disk."""

    name: str                    # how the file names the video (shown when it is missing)
    candidates: tuple[str, ...]  # where it may lie, relative to the root, in order of preference
    label: str | int | None      # class name, class id, or None when unlabelled
    where: str                   # "file:line" or "file entry N (id X)", for error messages
    # A space-separated line with more than two fields can be split at any space: every (path,
    # label) split, longest label first (the last one is the split above). Empty for other lines.
    splits: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------

def _read_text(path: Path, what: str = "annotation file") -> str:
    if not path.is_file():
        raise AnnotationError(f"{what} not found: {path}")
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: drop the byte-order mark some editors write
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start}). "
                              f"Fix: point the key to the {what} itself, not to a video or archive") from None


def _load_json(path: Path, what: str, object_pairs_hook=None) -> object:
    text = _read_text(path, what)
    if not text.strip():
        raise AnnotationError(f"{path}: empty file. Fix: re-download the {what} (it should hold JSON)")
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg}). "
                              f"Fix: re-download the {what} or repair it at that position") from None


def _is_int(text: str) -> bool:
    return re.fullmatch(r"-?[0-9]+", text) is not None


def _whole_seconds(text: str, where: str, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)  # "14.0" in some re-exported CSVs
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise AnnotationError(f"{where}: {column} must be a whole number of seconds, got {text!r}. "
                              "Fix: use the official Kinetics CSV (time_start,time_end in seconds)")
    return int(value)


# --------------------------------------------------------------------------------------------
# Class lists
# --------------------------------------------------------------------------------------------

def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names in label order: one per line, or a JSON file (SSv2's ``labels.json``, a map
    from name to id string, PySlowFast's ``kinetics_classnames.json``, a map from quoted name to
    id, or a plain list of names)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _class_names_from_json(path)
    lines = [(n, line.strip()) for n, line in enumerate(_read_text(path, "class-name file").splitlines(), 1)]
    lines = [(n, name) for n, name in lines if name]
    if not lines:
        raise AnnotationError(f"{path}: no class names. Fix: one class name per line, in label order")
    names = [name for _, name in lines]
    _refuse_duplicate_classes(path, names, lambda: [n for n, _ in lines])
    return names


def _refuse_duplicate_classes(path: Path, names: list[str], line_numbers: Callable[[], list[int] | None]) -> None:
    """A class listed twice would have two ids, and which one a label gets would be arbitrary.
    ``line_numbers()``: the line of each name (or None), asked only for the message."""
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        positions.setdefault(name, []).append(i)
    repeated = {name: at for name, at in positions.items() if len(at) > 1}
    if not repeated:
        return
    name, at = next(iter(repeated.items()))
    lines = line_numbers()
    where = (f"lines {', '.join(str(lines[i]) for i in at)}" if lines
             else f"entries {', '.join(str(i) for i in at)} (counting from 0)")
    more = f" ({len(repeated) - 1} more class names are repeated too)" if len(repeated) > 1 else ""
    raise AnnotationError(f"{path}: class name {name!r} is listed {len(at)} times, on {where}{more}. "
                          "Fix: keep one entry per class, then check that the ids after the removed one still "
                          "match the annotations")


def _json_lines(path: Path, strings: list[str]) -> list[int] | None:
    """The line of each of ``strings`` (in file order) in the JSON file ``path``, for messages;
    None when one cannot be found (an escape written differently)."""
    text, lines, pos = _read_text(path), [], 0
    for string in strings:
        found = -1
        for token in (json.dumps(string, ensure_ascii=False), json.dumps(string)):
            found = text.find(token, pos)
            if found >= 0:
                break
        if found < 0:
            return None
        lines.append(text.count("\n", 0, found) + 1)
        pos = found + len(token)
    return lines


class _JsonPairs(list):
    """A JSON object as its (key, value) pairs: ``json.loads`` keeps only the last of repeated keys."""


def _class_names_from_json(path: Path) -> list[str]:
    data = _load_json(path, "class-name file", object_pairs_hook=_JsonPairs)
    if isinstance(data, list) and not isinstance(data, _JsonPairs) and all(isinstance(n, str) for n in data):
        names = [n.strip() for n in data]
        _refuse_duplicate_classes(path, names, lambda: _json_lines(path, data))
    elif isinstance(data, _JsonPairs):
        ids = {}
        for name, value in data:
            try:
                ids[name.strip().strip('"')] = int(value)  # kinetics_classnames.json quotes the names
            except (TypeError, ValueError):
                raise AnnotationError(f"{path}: class {name!r} has id {value!r}, expected an integer. "
                                      "Fix: use SSv2's labels.json (class name -> id string such as \"0\")") from None
        if len(ids) < len(data):
            _refuse_duplicate_classes(path, [name.strip().strip('"') for name, _ in data],
                                      lambda: _json_lines(path, [name for name, _ in data]))
        if sorted(ids.values()) != list(range(len(ids))):
            raise AnnotationError(f"{path}: class ids must be 0..{len(ids) - 1}, each once. "
                                  "Fix: use SSv2's labels.json unmodified")
        names = sorted(ids, key=ids.get)
    else:
        raise AnnotationError(f"{path}: expected a JSON object (class name -> id) or a list of class names, "
                              f"got {type(data).__name__}. Fix: data.labels=/path/to/labels.json")
    if not names:
        raise AnnotationError(f"{path}: no class names. Fix: data.labels=/path/to/labels.json")
    return names


def annotation_class_names(path: str | os.PathLike) -> list[str]:
    """The sorted set of class names an annotation file uses: the class list of a dataset without
    ``data.labels``, taken from its training file so that ids are the same in every split."""
    entries = parse_annotation(path)
    names = {e.label for e in entries if isinstance(e.label, str)}
    if names:
        return sorted(names)
    if any(isinstance(e.label, int) for e in entries):
        raise AnnotationError(f"{path}: labels are class ids, so the class names must come from a file. "
                              "Fix: data.labels=/path/to/classes.txt (one class name per line, in id order)")
    raise AnnotationError(f"{path}: has no labels, so it cannot define the class list. "
                          "Fix: data.train_ann=<a labelled training file> or data.labels=<class-name file>")


# --------------------------------------------------------------------------------------------
# One parser per file style (no disk access besides the file itself)
# --------------------------------------------------------------------------------------------

def label_folder_names(label: str) -> tuple[str, ...]:
    """Per-label folder names public Kinetics downloaders write: the label as is, and with its
    spaces replaced by underscores."""
    return tuple(dict.fromkeys((label, label.replace(" ", "_"))))


def kinetics_video_name(youtube_id: str, time_start: int, time_end: int) -> str:
    """File name (without extension) of a Kinetics clip: ``{youtube_id}_{start:06d}_{end:06d}``."""
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}"


def parse_kinetics_csv(path: str | os.PathLike) -> list[AnnotationEntry]:
    """Entries of an official Kinetics CSV (``label,youtube_id,time_start,time_end,split``)."""
    path = Path(path)
    rows = csv.reader(io.StringIO(_read_text(path)))
    header = next(rows, None)
    if header is None or not any(h.strip() for h in header):
        raise AnnotationError(f"{path}: empty file. Fix: use the official Kinetics CSV "
                              "(label,youtube_id,time_start,time_end,split)")
    columns = [h.strip().lower() for h in header]
    missing = [c for c in KINETICS_COLUMNS if c not in columns]
    if missing:
        raise AnnotationError(f"{path}:1: the Kinetics CSV header lacks column(s) {', '.join(missing)} "
                              f"(found: {','.join(header)}). Fix: use the official CSV "
                              "(label,youtube_id,time_start,time_end,split) or a 'path label' list")
    i_id, i_start, i_end = (columns.index(c) for c in KINETICS_COLUMNS)
    i_label = columns.index("label") if "label" in columns else None
    # Where a label's videos may lie ("" = directly under the root), computed once per label:
    # this loop runs 240k times on Kinetics-400 train.
    prefixes = {"": ("",)}
    entries = []
    for row in rows:
        if not "".join(row).strip():
            continue
        where = f"{path}:{rows.line_num}"
        if len(row) < len(columns):
            raise AnnotationError(f"{where}: expected {len(columns)} fields ({','.join(columns)}), got "
                                  f"{len(row)}: {','.join(row)!r}. Fix: repair or remove the line")
        youtube_id = row[i_id].strip()
        if not youtube_id:
            raise AnnotationError(f"{where}: empty youtube_id. Fix: repair or remove the line")
        name = kinetics_video_name(youtube_id, _whole_seconds(row[i_start], where, "time_start"),
                                   _whole_seconds(row[i_end], where, "time_end"))
        label = row[i_label].strip() if i_label is not None else ""
        if label not in prefixes:
            prefixes[label] = ("",) + tuple(f"{folder}/" for folder in label_folder_names(label))
        candidates = tuple(f"{prefix}{name}.{ext}" for prefix in prefixes[label] for ext in KINETICS_EXTENSIONS)
        entries.append(AnnotationEntry(name, candidates, label or None, where))
    if not entries:
        raise AnnotationError(f"{path}: no videos listed (only a header). Fix: use the official Kinetics CSV")
    return entries


def _split_path_label(line: str, comma: bool) -> tuple[str, str] | None:
    if comma:
        fields = next(csv.reader([line]))  # csv: quoted fields may hold commas
        if len(fields) < 2:
            return None
        return ",".join(fields[:-1]).strip(), fields[-1].strip()
    parts = line.rsplit(None, 1)
    return (parts[0], parts[1]) if len(parts) == 2 else None


def _space_splits(line: str) -> tuple[tuple[str, str], ...]:
    """Every (path, label) split of a space-separated line at a run of whitespace, longest label
    first: with spaces allowed in both, only the class list (or the disk) can tell which is meant."""
    return tuple((line[:m.start()], line[m.end():]) for m in re.finditer(r"\s+", line))


def parse_path_label_list(path: str | os.PathLike) -> list[AnnotationEntry]:
    """Entries of a ``path label`` list (whitespace- or comma-separated, ``#`` comments).

    The label is the last field, so paths may contain spaces. The file is comma-separated when its
    first line has a comma and does not end in a whitespace-separated integer label; a
    ``path,label`` header line is skipped. An integer label is a class id (``-1``: unlabelled),
    anything else a class name. A space-separated class name may have spaces too: such lines keep
    every split in :attr:`AnnotationEntry.splits`, and :func:`load_annotation` picks one.
    """
    path = Path(path)
    lines = [(n, line.strip()) for n, line in enumerate(_read_text(path).splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise AnnotationError(f"{path}: no videos listed. Fix: one 'path label' per line")
    first = lines[0][1]
    tail = first.rsplit(None, 1)
    comma = "," in first and not (len(tail) == 2 and _is_int(tail[1]))
    entries = []
    for i, (lineno, line) in enumerate(lines):
        where = f"{path}:{lineno}"
        fields = _split_path_label(line, comma)
        if i == 0 and fields and fields[0].lower() in _PATH_HEADERS and fields[1].lower() in _LABEL_HEADERS:
            continue  # header
        if fields is None or not fields[0] or not fields[1]:
            sep = "path,label" if comma else "path label"
            raise AnnotationError(f"{where}: expected '{sep}' (label: a class id or class name), got {line!r}. "
                                  "Fix: repair or remove the line")
        video, label_text = fields
        label: str | int | None = int(label_text) if _is_int(label_text) else label_text
        splits = _space_splits(line) if not comma and isinstance(label, str) else ()
        entries.append(AnnotationEntry(video, (video,), None if label == -1 else label, where,
                                       splits if len(splits) > 1 else ()))
    if not entries:
        raise AnnotationError(f"{path}: no videos listed (only a header). Fix: one 'path,label' per line")
    return entries


def ssv2_class_name(template: str) -> str:
    """SSv2's class of a video: its template with the placeholder brackets removed."""
    return template.replace("[", "").replace("]", "").strip()


def parse_ssv2_json(path: str | os.PathLike) -> list[AnnotationEntry]:
    """Entries of an official SSv2 split file (``train.json``, ``validation.json``, ``test.json``)."""
    path = Path(path)
    data = _load_json(path, "annotation file")
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON list of videos ({{\"id\", \"template\", ...}}), got a "
                              f"{type(data).__name__}. Fix: data.*_ann takes SSv2's train.json / validation.json / "
                              "test.json (labels.json goes to data.labels)")
    if not data:
        raise AnnotationError(f"{path}: no videos listed (an empty list). Fix: re-download the file")
    entries = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not str(item.get("id", "")).strip():
            raise AnnotationError(f"{path} entry {i}: expected an object with an 'id', got {str(item)[:80]}. "
                                  "Fix: use SSv2's official JSON files")
        video_id = str(item["id"]).strip()
        where = f"{path} entry {i} (id {video_id})"
        template = item.get("template")
        if template is not None and not isinstance(template, str):
            raise AnnotationError(f"{where}: 'template' must be a string, got {template!r}. "
                                  "Fix: use SSv2's official JSON files")
        entries.append(AnnotationEntry(video_id, tuple(f"{video_id}.{ext}" for ext in SSV2_EXTENSIONS),
                                       ssv2_class_name(template) if template else None, where))
    return entries


def annotation_style(path: str | os.PathLike) -> str:
    """``"ssv2_json"``, ``"kinetics_csv"`` or ``"path_label"``, recognised from the file itself."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path}")
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        head = f.read(4096)  # enough for the first line; parsing reads the whole file
    if path.suffix.lower() == ".json" or head.lstrip()[:1] in ("[", "{"):
        return "ssv2_json"
    first = next((line for line in head.splitlines() if line.strip()), "")
    header = {h.strip().lower() for h in first.split(",")}
    return "kinetics_csv" if header & set(KINETICS_COLUMNS) else "path_label"


PARSERS = {"ssv2_json": parse_ssv2_json, "kinetics_csv": parse_kinetics_csv, "path_label": parse_path_label_list}


def parse_annotation(path: str | os.PathLike) -> tuple[AnnotationEntry, ...]:
    """Entries of an annotation file of any style. Cached while the file is unchanged: training
    reads the training file for the class list and again for its videos."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path}")
    stat = path.stat()
    return _parse_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _parse_cached(path: str, mtime_ns: int, size: int) -> tuple[AnnotationEntry, ...]:
    return tuple(PARSERS[annotation_style(path)](path))


# --------------------------------------------------------------------------------------------
# From entries to records: class ids and files on disk
# --------------------------------------------------------------------------------------------

class _FolderListing:
    """Existence checks through one cached listing per folder: finding 10^5 videos costs a few
    hundred directory listings instead of up to 9 x 10^5 ``stat`` calls (slow on network disks).
    Plain strings, not ``Path`` objects: this runs millions of times on Kinetics."""

    def __init__(self, base: str):
        self.base = base
        self._names: dict[str, frozenset[str]] = {}

    def find(self, relative: str) -> str | None:
        """``base/relative`` when that file exists (``relative`` may be absolute), else None."""
        folder, _, name = relative.rpartition("/")
        names = self._names.get(folder)
        if names is None:
            try:
                names = frozenset(os.listdir(os.path.join(self.base, folder)))
            except OSError:
                names = frozenset()
            self._names[folder] = names
        return os.path.join(self.base, relative) if name in names else None


def _class_lookup(class_names: Sequence[str] | None) -> tuple[dict[str, int] | None, int | None]:
    """Name -> id (the first id when a name repeats) and the class count, or (None, None)."""
    if class_names is None:
        return None, None
    return {n: i for i, n in reversed(list(enumerate(class_names)))}, len(class_names)


def _class_id(entry: AnnotationEntry, index: dict[str, int] | None, num_classes: int | None, labels: str,
              class_source: str) -> int:
    if labels == "ignored":
        return -1
    label = entry.label
    if label is None:
        if labels == "required":
            raise AnnotationError(f"{entry.where}: no label. Fix: add the label, or remove the line")
        return -1
    if isinstance(label, int):
        if num_classes is not None and not 0 <= label < num_classes:
            raise AnnotationError(f"{entry.where}: class id {label} is out of range for the {num_classes} classes of "
                                  f"{class_source}. Fix: ids run from 0 to {num_classes - 1}; check the list "
                                  "against data.labels")
        return label
    if index is None:
        raise AnnotationError(f"{entry.where}: label {label!r} is a class name, but no class list was given; "
                              "expected 'path label' with an integer label, or set data.labels to a class-name file")
    if label not in index:
        raise AnnotationError(f"{entry.where}: unknown label {label!r}: not among the {len(index)} classes of "
                              f"{class_source}. Fix: check that this file belongs to the same dataset (and "
                              "release) as the class list, or set data.labels to a class-name file listing every class")
    return index[label]


def _locate(entry: AnnotationEntry, index: dict[str, int] | None,
            find: Callable[[str], str | None] | None) -> tuple[AnnotationEntry, str | None]:
    """The entry (with its path and label settled) and its video on disk (None when missing, or
    when ``find`` is None: no disk access). A line split at several spaces takes the longest label
    that is a class name and whose video exists, else any split whose video exists, else the
    longest label that is a class name, else its last word."""
    if not entry.splits:
        if find is None:
            return entry, None
        return entry, next(filter(None, map(find, entry.candidates)), None)
    named = [s for s in entry.splits if index is not None and s[1] in index]
    if find is not None:
        for video, label in named + [s for s in entry.splits if s not in named]:
            path = find(video)
            if path is not None:
                return replace(entry, name=video, candidates=(video,), label=label, splits=()), path
    video, label = named[0] if named else entry.splits[-1]
    return replace(entry, name=video, candidates=(video,), label=label, splits=()), None


def _refuse_outside(entry: AnnotationEntry, path: str, root: str) -> None:
    """``data.confine_to_root``: refuse a video (``path``, the root joined with the entry's path)
    outside the absolute ``root``: an absolute path elsewhere, or one climbing out with ``..``.
    Lexical, not resolved, so that a symlink inside the root (a dataset on another disk) stays allowed."""
    if os.path.commonpath([os.path.abspath(path), root]) != root:
        raise AnnotationError(f"{entry.where}: video {entry.name!r} lies outside the dataset root {root}, and "
                              "data.confine_to_root=true refuses it. Fix: list it by its path under data.root "
                              "(no '..', no absolute path elsewhere), or set data.confine_to_root=false")


_REPORTED: set[tuple] = set()  # (kind, file, root, count) of the reports already logged


def _report_once(key: tuple, message: str, *args) -> None:
    """Log a report about an annotation once per process (training builds the validation set
    twice: per-epoch validation and the final multi-view test)."""
    if key not in _REPORTED:
        _REPORTED.add(key)
        log.warning(message, *args)


def _report_missing(source: Path, root: Path, missing: list[str], total: int) -> None:
    shown = ", ".join(missing[:MISSING_SHOWN]) + (", ..." if len(missing) > MISSING_SHOWN else "")
    _report_once(("missing", str(source), str(root), len(missing)),
                 "%d of %d videos listed in %s are missing under %s (not trained on; an evaluation counts them "
                 "as failed): %s",
                 len(missing), total, source, root, shown)


def _line_of(entry: AnnotationEntry, source: Path) -> str:
    """``entry.where`` without its file name: "line 12" or "entry 3 (id 42)"."""
    rest = entry.where.removeprefix(str(source))
    return f"line {rest[1:]}" if rest.startswith(":") else rest.strip()


def _report_duplicates(source: Path, duplicates: list[tuple[AnnotationEntry, AnnotationEntry]]) -> None:
    """Entries naming a video already listed: each video is used once, with its first label."""
    relabelled = sum(first.label != again.label for first, again in duplicates)
    shown = ", ".join(f"{again.name} ({_line_of(again, source)} repeats {_line_of(first, source)})"
                      for first, again in duplicates[:DUPLICATES_SHOWN])
    _report_once(("duplicate", str(source), len(duplicates)),
                 "%d entries of %s list a video already listed and are skipped (each video is used once, with its "
                 "first label%s): %s%s", len(duplicates), source,
                 f"; {relabelled} of them give another label" if relabelled else "", shown,
                 ", ..." if len(duplicates) > DUPLICATES_SHOWN else "")


def load_annotation(ann_file: str | os.PathLike, root: str | os.PathLike | None = None,
                    class_names: Sequence[str] | None = None, *, labels: str = "required",
                    class_source: str = "the class list", confine: bool = False) -> tuple[list[VideoRecord], list[str]]:
    """Records of the videos of ``ann_file`` that exist under ``root`` (default: the file's folder).

    ``labels``: ``"required"`` (training and evaluation: an unlabelled entry is an error),
    ``"optional"`` (unlabelled entries get -1) or ``"ignored"`` (every label -1: prediction).
    ``class_names`` maps label names to ids; ``class_source`` says where it came from, for messages.
    ``confine``: refuse entries outside ``root`` (``data.confine_to_root``).
    Videos missing on disk are skipped and reported once (count and first names), and so are
    entries repeating a video (each video is used once, with its first label); returns the records
    and the names of the missing videos. Raises :class:`AnnotationError` when none exists.
    """
    ann_file = Path(ann_file)
    entries = parse_annotation(ann_file)
    if labels == "required" and all(e.label is None for e in entries):
        raise AnnotationError(f"{ann_file}: has no labels (an unlabelled test split), so it can be neither trained "
                              f"nor evaluated on. Fix: classify its videos with eval.py checkpoint=... "
                              f"predict={ann_file}")
    index, num_classes = _class_lookup(class_names)
    base = Path(root) if root else ann_file.parent
    listing = _FolderListing(str(base))
    root_abs = os.path.abspath(base)
    records, missing, duplicates = [], [], []
    seen: dict[str, AnnotationEntry] = {}  # video (its path, or its name when missing) -> first entry
    for entry in entries:
        entry, path = _locate(entry, index, listing.find)
        if confine:
            _refuse_outside(entry, path or os.path.join(base, entry.candidates[0]), root_abs)
        label = _class_id(entry, index, num_classes, labels, class_source)
        key = os.path.normpath(path) if path else entry.name  # "./a.mp4" is "a.mp4"
        if key in seen:
            duplicates.append((seen[key], entry))
            continue
        seen[key] = entry
        if path is None:
            missing.append(entry.name)
        else:
            records.append(VideoRecord(path, label))
    if not records:
        suffixes = sorted({Path(c).suffix for c in entries[0].candidates})
        raise AnnotationError(f"none of the {len(entries)} videos listed in {ann_file} is under {base} (looked for "
                              f"e.g. {base / entries[0].candidates[0]}, with the extensions {' '.join(suffixes)}). "
                              "Fix: data.root=<the folder that holds the videos>, or convert videos in another "
                              "container to one of those extensions")
    if duplicates:
        _report_duplicates(ann_file, duplicates)
    if missing:
        _report_missing(ann_file, base, missing, len(entries) - len(duplicates))
    return records, missing


def read_path_label_list(ann_file: str | os.PathLike, root: str | os.PathLike | None = None,
                         class_names: Sequence[str] | None = None) -> list[VideoRecord]:
    """Read a ``path label`` list without looking at the disk (see :func:`parse_path_label_list`).
    Relative paths are joined to ``root`` (default: the list's folder); class names need
    ``class_names``."""
    ann_file = Path(ann_file)
    base = Path(root) if root else ann_file.parent
    index, num_classes = _class_lookup(class_names)
    records = []
    for entry in parse_path_label_list(ann_file):
        entry, _ = _locate(entry, index, None)
        records.append(VideoRecord(str(base / entry.candidates[0]),
                                   _class_id(entry, index, num_classes, "optional", "the class list")))
    return records
