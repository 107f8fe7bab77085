"""What the phone's browser tests need: processes in the background, Chromium with a fake
microphone, audio to speak and to compare."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mediastreams.audio import mulaw, resample_int16, to_mulaw

ROOT = Path(__file__).parent.parent
ARTIFACTS = Path(os.environ.get("MEDIASTREAMS_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
"""Where the browser tests leave what a person should look at (the timeline's screenshot)."""


def find_chromium() -> str | None:
    """Debian's Chromium (``apt-get install chromium``), or any ``chromium`` on the PATH."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.access("/usr/bin/chromium", os.X_OK):
        found = "/usr/bin/chromium"
    return found


CHROMIUM = find_chromium()


class Process:
    """A command running in the background, its output collected line by line."""

    def __init__(self, command: list[str], *, cwd: Path | None = None) -> None:
        self.command = command
        self.popen = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")},
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in (
                (self.popen.stdout, self.stdout),
                (self.popen.stderr, self.stderr),
            )
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        with stream:
            for line in stream:
                lines.append(line)
                self._lines.put(line)

    def wait_for_line(self, pattern: str, timeout_s: float = 60.0) -> re.Match[str]:
        """The first line (stdout or stderr, from now on) that matches ``pattern``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no line matching {pattern!r} from {self.command}: {self.output()}"
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                assert self.popen.poll() is None, f"{self.command} ended: {self.output()}"
                continue
            match = re.search(pattern, line)
            if match is not None:
                return match

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 60.0) -> int:
        """Signal it and wait for it to end (and its output to be read); its exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = 60.0) -> int:
        """Wait for it to end by itself (and its output to be read); its exit status."""
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.command} did not end: {self.output()}") from None
        finally:
            for reader in self._readers:
                reader.join(timeout=timeout_s)

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)


def mediastreams(*args: str, cwd: Path | None = None) -> Process:
    return Process([sys.executable, "-m", "mediastreams", *args], cwd=cwd)


@contextmanager
def serving(*args: str) -> Iterator[str]:
    """``mediastreams serve ARGS`` on a free port of 127.0.0.1: its webhook URL."""
    server = mediastreams("serve", "--port", "0", *args)
    try:
        url = server.wait_for_line(r"webhook (http://127\.0\.0\.1:\d+/incoming-call)")[1]
        yield url
    finally:
        assert server.stop() == 0, server.output()


@contextmanager
def phone(target: str, out_dir: Path, *args: str) -> Iterator[tuple[str, Process]]:
    """``mediastreams phone TARGET --no-browser --out OUT_DIR``: the page's URL, the process."""
    process = mediastreams("phone", target, "--no-browser", "--out", str(out_dir), *args)
    try:
        url = process.wait_for_line(r"^(http://127\.0\.0\.1:\d+/)$")[1]
        yield url, process
    finally:
        process.stop()


@contextmanager
def chromium(fake_microphone: Path, user_data: Path) -> Iterator[Any]:
    """Headless Chromium whose microphone plays ``fake_microphone`` (a WAV, in a loop)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None
    args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={fake_microphone}",
        # A page in the background keeps its audio running on a busy machine.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data),
            executable_path=CHROMIUM,
            headless=True,
            ignore_default_args=["--headless"],
            args=args,
            viewport={"width": 1200, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


# --- audio ----------------------------------------------------------------------------------

Samples = npt.NDArray[np.int16]


def prompt_pcm(name: str) -> Samples:
    """A prompt shipped with the demo, as 16-bit PCM at 8 kHz."""
    data = resources.files("mediastreams.demo").joinpath("prompts", f"{name}.wav").read_bytes()
    return np.frombuffer(mulaw.decode(to_mulaw(data)), dtype="<i2")


def write_wav(path: Path, samples: Samples, rate: int) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    """Samples (frames x channels) and the rate."""
    with wave.open(str(path)) as wav:
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return data.reshape(-1, wav.getnchannels()), wav.getframerate()


def best_correlation(signal: Samples, reference: Samples) -> tuple[float, int]:
    """The highest normalized correlation of ``reference`` with a stretch of ``signal``, and
    where that stretch starts."""
    sig = signal.astype(np.float64)
    ref = reference.astype(np.float64)
    if len(sig) < len(ref) or not ref.any():
        return 0.0, 0
    products = np.correlate(sig, ref, mode="valid")
    energy = np.sqrt(np.convolve(sig**2, np.ones(len(ref)), mode="valid")) * np.sqrt((ref**2).sum())
    scores = products / np.maximum(energy, 1e-9)
    at = int(np.argmax(scores))
    return float(scores[at]), at


def speech_correlations(signal: Samples, speech: Samples, segment_ms: int = 500) -> list[float]:
    """For each ``segment_ms`` of ``speech`` (8 kHz) that holds speech, how well it is found
    in ``signal`` (8 kHz): a gap or a drop elsewhere does not spoil the other segments."""
    step = segment_ms * 8
    scores = []
    for start in range(0, len(speech) - step + 1, step):
        segment = speech[start : start + step]
        if np.sqrt(np.mean(segment.astype(np.float64) ** 2)) < 300:  # a pause: nothing to find
            continue
        scores.append(best_correlation(signal, segment)[0])
    return scores


def to_8k(samples: Samples, rate: int) -> Samples:
    return resample_int16(np.ascontiguousarray(samples, dtype=np.int16), rate, 8000)
