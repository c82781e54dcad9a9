# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""JSON files the collection writes (delta states, reports): written atomically, mode 0600."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import tempfile


CHUNK = 2000   # entries of a large dict encoded at a time (see dump)
CHUNK_ITEMS = 20000   # ... or fewer, once their list values hold this many items together


class Pairs(object):
    """A JSON object given as an iterable of ``(key, value)``, made as ``dump`` writes it (never
    whole in memory): ``dump`` takes it as a value of its top-level dict."""

    def __init__(self, pairs):
        self.pairs = pairs


def _write_pairs(pairs, handle):
    """The JSON object of ``pairs``, ``CHUNK`` of them at a time, or fewer when their values are
    long lists (2,000 member lists of a large tenant's groups were 8 MB of text at once, twice)."""
    handle.write('{')
    chunk = {}
    items = 0
    first = True
    for key, value in pairs:
        chunk[key] = value
        items += len(value) if isinstance(value, list) else 1
        if len(chunk) >= CHUNK or items >= CHUNK_ITEMS:
            handle.write(('' if first else ', ') + json.dumps(chunk)[1:-1])
            first = False
            chunk = {}
            items = 0
    if chunk:
        handle.write(('' if first else ', ') + json.dumps(chunk)[1:-1])
    handle.write('}')


def dump(data, handle):
    """``json.dump(data, handle)``, about twice as fast on a delta state and with bounded memory:
    ``json.dump`` encodes in pure Python (CPython's C encoder serves ``json.dumps`` only), and
    ``json.dumps`` of the whole would hold the text of a 230 MB state at once. A dict is written
    key by key, and so is every dict value of a dict, however deep (a result wrapped in one key is
    written as the result itself would be: at xlarge, ``json.dumps`` of the 40 MB result under one
    key raised a check run's peak from 370 to 420 MB); its large dict and list values ``CHUNK``
    entries at a time, with ``json.dumps``; a ``Pairs`` value is written as the object its pairs
    make, as they come."""
    if not _plain_object(data):
        handle.write(json.dumps(data))
        return
    _write_object(data, handle)


def _plain_object(value):
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _write_object(data, handle):
    handle.write('{')
    for index, (key, value) in enumerate(data.items()):
        handle.write('%s%s: ' % (', ' if index else '', json.dumps(key)))
        if isinstance(value, Pairs):
            _write_pairs(value.pairs, handle)
        elif _plain_object(value):
            if len(value) > CHUNK:
                _write_pairs(value.items(), handle)
            else:
                _write_object(value, handle)
        elif isinstance(value, list) and len(value) > CHUNK:
            handle.write('[')
            for start in range(0, len(value), CHUNK):
                handle.write((', ' if start else '') + json.dumps(value[start:start + CHUNK])[1:-1])
            handle.write(']')
        else:
            handle.write(json.dumps(value))
    handle.write('}')


def write_atomically(path, data, prefix='.cloudsync-'):
    """Write ``data`` as JSON to ``path`` through a temporary file in the same folder, then rename:
    a crash mid-write never leaves half a file that poisons the next run. Mode 0600 (the files hold
    group and member identifiers)."""
    directory = os.path.dirname(os.path.abspath(path)) or '.'
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, 'w') as handle:
            dump(data, handle)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read(path, what, advice, error=ValueError, handle=None):
    """The JSON data at ``path``, or None when there is no file. A file that cannot be read or is
    not JSON raises ``error('Cannot read <what> <path>: <why> (<advice>)')``. ``handle``: the file,
    opened earlier (read from it, then closed, even if ``path`` was removed meanwhile)."""
    if handle is None and (not path or not os.path.exists(path)):
        return None
    try:
        with (handle if handle is not None else open(path, 'r')) as opened:
            return json.load(opened)
    except (IOError, OSError, ValueError) as exc:
        raise error('Cannot read %s %s: %s (%s)' % (what, path, exc, advice))
