"""Inputs that travel with a remote (Dask) task, so that no shared filesystem is needed.

Owns both ends: :func:`_remote_payload` packs the template and the ``context_path`` file into
a task's payload on the client (bytes and SHA-256), :func:`_local_inputs` makes them readable on
the worker (a file with the same content is used in place, otherwise a private copy, removed
afterwards). :mod:`evalterritoire.render.reports` calls ``_remote_payload`` through its own namespace
(tests replace it there).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from evalterritoire.render.status import _sha256_file


@contextlib.contextmanager
def _local_inputs(payload: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The payload with inputs readable here: shipped copies replace missing or stale files.

    A remote payload (:func:`_remote_payload`) carries the bytes of the template and of the
    context file. A file that exists on this machine with the same content is used in place;
    otherwise the shipped bytes are written to a private directory, removed afterwards, and the
    payload (template path, ``context_path`` parameter) points there.
    """
    shipped = payload.get("sources")
    if not shipped:
        yield payload
        return
    local = dict(payload)
    parameters = dict(payload["parameters"])
    with tempfile.TemporaryDirectory(prefix="et-inputs-") as tmp:
        for key, (original, data, sha) in sorted(shipped.items()):
            path = Path(original)
            if not (path.is_file() and _sha256_file(path) == sha):
                path = Path(tmp) / key / path.name
                path.parent.mkdir()
                path.write_bytes(data)
            if key == "template":
                local["template"] = str(path)
            else:
                parameters[key] = str(path)
        local["parameters"] = parameters
        yield local


def _remote_payload(payload: Mapping[str, Any], templates: dict[str, bytes]) -> dict[str, Any]:
    """A payload that needs no shared filesystem: its inputs travel with it.

    The template and the ``context_path`` file travel as bytes (with their SHA-256), see
    :func:`_local_inputs`; the rendered files come back as bytes and are written by the client.
    ``templates`` caches the bytes of the templates (read once per batch; contexts are read
    when their task is sent).
    """
    remote = dict(payload)
    sources: dict[str, tuple[str, bytes, str]] = {}
    candidates = {
        "template": payload["template"],
        "context_path": payload["parameters"].get("context_path"),
    }
    for key, name in candidates.items():
        if not isinstance(name, str) or not name or not Path(name).is_file():
            continue
        data = templates.get(name) if key == "template" else None
        if data is None:
            data = Path(name).read_bytes()
            if key == "template":
                templates[name] = data
        sources[key] = (name, data, hashlib.sha256(data).hexdigest())
    remote["sources"] = sources
    return remote
