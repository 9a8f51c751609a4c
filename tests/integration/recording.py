"""Run one `metalr` command on a config that records every key asked of it, and list the package modules
it imported: ``python recording.py OUT.json <metalr arguments>`` writes {"rc", "keys", "modules"}."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, Iterator


class Recording(dict):
    """A config mapping that logs the dotted path of every key asked of it (values, membership, listing)."""

    def __init__(self, data: dict, path: str, log: set[str]):
        super().__init__(data)
        self._path, self._log = path, log

    def _key(self, key: Any) -> str:
        path = f"{self._path}.{key}" if self._path else str(key)
        self._log.add(path)
        return path

    def __getitem__(self, key):
        path, value = self._key(key), dict.__getitem__(self, key)
        return Recording(value, path, self._log) if isinstance(value, dict) else value

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return self[key]
        self._key(key)  # asked for, absent: the answer depends on it too
        return default

    def __contains__(self, key) -> bool:
        self._key(key)
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator:
        for key in dict.__iter__(self):
            self._key(key)
            yield key

    def keys(self):
        return list(iter(self))

    def items(self):
        return [(key, self[key]) for key in dict.keys(self)]

    def values(self):
        return [self[key] for key in dict.keys(self)]

    def __len__(self) -> int:
        return len(self.keys())

    def _whole(self) -> dict:
        """The plain content, every key of it logged: it leaves the recording whole."""
        return {key: value._whole() if isinstance(value, Recording) else copy.deepcopy(value)
                for key, value in self.items()}

    def __eq__(self, other) -> bool:
        return self._whole() == (other._whole() if isinstance(other, Recording) else other)

    __hash__ = None

    def __deepcopy__(self, memo) -> dict:
        return self._whole()

    def copy(self) -> dict:
        return self._whole()

    def __reduce__(self):
        return dict, (self._whole(),)


def main(out: str, argv: list[str]) -> None:
    from metalr import cli

    log: set[str] = set()
    load = cli._load
    cli._load = lambda args: Recording(load(args), "", log)
    rc = cli.main(argv)
    modules = sorted(str(Path(m.__file__).resolve()) for name, m in list(sys.modules.items())
                     if name.split(".")[0] == "metalr" and getattr(m, "__file__", None))
    Path(out).write_text(json.dumps({"rc": rc, "keys": sorted(log), "modules": modules}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
