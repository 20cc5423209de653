"""The kill switch (服务降级): pause the assistant by API, by a flag file, or at start.

    switch = KillSwitch(pause_file=Path("/run/lawtune/paused"), notice="法律助手暂停服务…")
    switch.pause(notice=None)  /  switch.resume()       # what POST /admin/pause|resume call
    touch /run/lawtune/paused                            # what an operator (or cron, or Ansible) does
    switch.state() → SwitchState(paused=True, notice="…", source="file")

Paused means every new chat request gets 503 with the notice; answers already being generated finish.
With a pause file configured the file *is* the state, so every replica pointed at the same file (a shared
volume) flips together and the state survives restarts: `pause()` writes it (the notice as its text),
`resume()` removes it. `state()` stats the file on every call (microseconds), so a flip takes effect on
the very next request, well within the 1-second promise, with no watcher thread to die silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lawtune.fsutil import atomic_write_text


@dataclass(frozen=True)
class SwitchState:
    paused: bool
    notice: str
    source: str | None  # "api" | "file" | "start" | None when running


class KillSwitch:
    def __init__(self, notice: str, pause_file: Path | None = None, paused: bool = False):
        self.default_notice = notice
        self.pause_file = pause_file
        self._paused = paused  # used when there is no pause file
        self._source = "start" if paused else None
        self._notice = notice
        self._file_cache: tuple[tuple[int, int], str] | None = None  # (mtime_ns, size) → notice text
        if paused and pause_file is not None:
            self.pause(None, source="start")

    def _file_notice(self) -> str | None:
        """The pause file's notice if it exists (re-read only when it changed), else None."""
        try:
            info = os.stat(self.pause_file)  # type: ignore[arg-type]
        except OSError:
            self._file_cache = None
            return None
        stamp = (info.st_mtime_ns, info.st_size)
        if self._file_cache is None or self._file_cache[0] != stamp:
            try:
                text = Path(self.pause_file).read_text(encoding="utf-8").strip()  # type: ignore[arg-type]
            except (OSError, UnicodeDecodeError):
                text = ""  # unreadable but present: still paused, with the default notice
            self._file_cache = (stamp, text)
        return self._file_cache[1] or self.default_notice

    def state(self) -> SwitchState:
        if self.pause_file is not None:
            notice = self._file_notice()
            if notice is None:
                return SwitchState(False, self.default_notice, None)
            return SwitchState(True, notice, self._source if self._source in ("api", "start") else "file")
        if self._paused:
            return SwitchState(True, self._notice, self._source)
        return SwitchState(False, self.default_notice, None)

    def pause(self, notice: str | None = None, source: str = "api") -> SwitchState:
        notice = notice or self.default_notice
        self._source, self._notice, self._paused = source, notice, True
        if self.pause_file is not None:
            self.pause_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.pause_file, notice + "\n")
        return self.state()

    def resume(self) -> SwitchState:
        self._paused, self._source, self._notice = False, None, self.default_notice
        if self.pause_file is not None:
            self.pause_file.unlink(missing_ok=True)
        return self.state()
