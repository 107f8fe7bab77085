"""The phone's page in a real headless Chromium, its microphone a WAV file, against real
servers on 127.0.0.1: ``mediastreams serve --echo``, the demo's conversation, and a small
app of this file that answers clicks (to measure latency)."""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mediastreams.audio import mulaw, resample_int16
from mediastreams.trace import TraceEntry, read_trace
from phone_harness import (
    ARTIFACTS,
    CHROMIUM,
    Samples,
    chromium,
    phone,
    prompt_pcm,
    read_wav,
    serving,
    speech_correlations,
    to_8k,
    write_wav,
)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium to drive: install Debian's chromium (apt-get install chromium), as "
    ".ci/run does",
)

MIC_RATE = 48_000


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Samples]:
    """The microphone's file (the caller's request, then a second of silence, in a loop), and
    its speech at 8 kHz."""
    spoken = np.concatenate([prompt_pcm("caller-request"), np.zeros(8000, dtype=np.int16)])
    folder = tmp_path_factory.mktemp("microphone")
    path = write_wav(folder / "speech.wav", resample_int16(spoken, 8000, MIC_RATE), MIC_RATE)
    return path, spoken


def wait(page: Any, condition: str, timeout_s: float = 60.0) -> None:
    """Until ``condition`` (JavaScript) holds in the page; fails after ``timeout_s``, with a
    screenshot of the page in the artifacts."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition, timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / "phone-failure.png", full_page=True)
        events = page.locator("#events").inner_text()
        raise AssertionError(f"still not {condition!r}; events:\n{events}") from None


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    wait(page, "window.phone.state() === 'idle'")
    return page, errors


def tapped(page: Any) -> Samples:
    """What the page's speaker played, at 8 kHz."""
    pcm = np.frombuffer(base64.b64decode(page.evaluate("window.phone.tapPcm()")), dtype="<i2")
    return to_8k(pcm, page.evaluate("window.phone.tapRate()"))


def twilio_events(trace: Path) -> Iterator[dict[str, Any]]:
    """The frames Twilio's side sent, as JSON (the trace leaves media payloads out)."""
    with trace.open(encoding="utf-8") as lines:
        for entry in read_trace(lines):
            if isinstance(entry, TraceEntry) and entry.sender == "twilio" and entry.text:
                yield json.loads(entry.text)


def test_talking_to_the_echo_server(tmp_path: Path, speech: tuple[Path, Samples]) -> None:
    microphone, spoken = speech
    out = tmp_path / "out"
    with (
        serving("--echo") as webhook,
        phone(webhook, out) as (url, process),
        chromium(microphone, tmp_path / "profile") as browser,
    ):
        page, errors = open_page(browser, url + "?tap=1")
        cancel_echo = page.get_by_label("Echo cancellation")
        assert cancel_echo.is_checked()  # the default
        # The echo server plays the caller's own voice back at once: the browser's echo
        # canceller takes it for echo and cuts into the caller's speech (docs/phone.md).
        # Fidelity is measured as with headphones.
        cancel_echo.uncheck()
        page.get_by_role("button", name="Call").click()
        wait(page, "window.phone.state() === 'connected'")
        # Three passes of the microphone's file (4.2 s each). On a busy machine a stall of
        # the processes can still cut a hole in one pass before the jitter buffers have
        # grown to cover it; each part of the request must come through whole in one pass.
        wait(page, "window.phone.timeline.nowMs >= 14500")
        page.get_by_role("button", name="7", exact=True).click()
        wait(page, "document.querySelector('#events li[data-type=dtmf]') !== null")
        page.get_by_role("button", name="Hang up").click()
        wait(page, "window.phone.report !== null")
        heard_by_speaker = tapped(page)
        links = page.locator("#downloads a").evaluate_all("links => links.map(a => a.href)")
        downloads = {link.rsplit("/", 1)[1]: httpx.get(link, timeout=30) for link in links}
        report = page.evaluate("window.phone.report")
        print("the speaker's jitter buffer:", page.evaluate("window.phone.speaker"))
        print("\n".join(page.evaluate("window.debugLog || []")))
        assert errors == []
    assert process.popen.returncode == 0, process.output()

    assert {name: r.status_code for name, r in downloads.items()} == {
        "caller-heard.wav": 200,
        "call-stereo.wav": 200,
        "trace.jsonl": 200,
        "report.json": 200,
    }
    folder = out / "call-1"
    assert downloads["call-stereo.wav"].content == (folder / "call-stereo.wav").read_bytes()
    assert json.loads(downloads["report.json"].content)["ended_by"] == report["ended_by"]
    assert report["ended_by"] == "caller" and report["groups"] == []

    # The app got the caller's speech: the frames sent on its socket (the stereo
    # recording's left channel) hold the microphone's file.
    stereo, _ = read_wav(folder / "call-stereo.wav")
    to_app = speech_correlations(stereo[:, 0].copy(), spoken)
    print("correlations, 500 ms segments: to the app", to_app)
    assert len(to_app) >= 5 and min(to_app) >= 0.9, to_app
    # The page played the echo back through its speaker.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    write_wav(ARTIFACTS / "phone-echo-speaker.wav", heard_by_speaker, 8000)  # to listen to
    from_app = speech_correlations(heard_by_speaker, spoken)
    print("correlations, 500 ms segments: from the speaker", from_app)
    assert len(from_app) >= 5 and min(from_app) >= 0.8, from_app

    # The key went to the app as a dtmf frame.
    dtmf = [e for e in twilio_events(folder / "trace.jsonl") if e["event"] == "dtmf"]
    assert [e["dtmf"]["digit"] for e in dtmf] == ["7"]


def now_ms(page: Any) -> int:
    """The call's time at the page's last tick."""
    return int(page.evaluate("window.phone.timeline.nowMs"))


def last_speech_end_ms(page: Any) -> int:
    return int(page.evaluate("window.phone.timeline.speech.at(-1).end_ms"))


def heard(since_ms: int, *, loud_ms: int = 0, then_quiet_ms: int = 0) -> str:
    """A page condition: since ``since_ms`` of the call, the caller heard the app for at
    least ``loud_ms`` (peaks above 0.1), and the last ``then_quiet_ms`` were quiet."""
    return f"""(() => {{
        const ticks = window.phone.timeline.ticks.filter((t) => t[0] >= {since_ms});
        const loud = ticks.filter((t) => Math.max(...t[2]) > 0.1).length * 20;
        const quiet = ticks.slice(-{then_quiet_ms // 20 or 1});
        const silent = {then_quiet_ms} === 0 || quiet.every((t) => Math.max(...t[2]) < 0.02);
        return loud >= Math.max({loud_ms}, 20) && silent && ticks.length * 20 > {then_quiet_ms};
    }})()"""


def test_a_barge_in_on_the_demo_shows_its_clear(
    tmp_path: Path, speech: tuple[Path, Samples]
) -> None:
    microphone, _ = speech
    mute = "Mute"
    with (
        serving("--app", "mediastreams.demo.conversation:handler") as webhook,
        phone(webhook, tmp_path / "out") as (url, process),
        chromium(microphone, tmp_path / "profile") as browser,
    ):
        page, errors = open_page(browser, url)
        page.get_by_role("button", name=mute).click()  # silent while the app greets
        page.get_by_role("button", name="Call").click()
        wait(page, heard(0, loud_ms=3000, then_quiet_ms=1000))
        spoken = "document.querySelectorAll('#events li[data-type=speech]').length"
        before = page.evaluate(spoken)
        page.get_by_role("button", name=mute).click()  # the caller asks...
        wait(page, f"{spoken} > {before}")
        asked = last_speech_end_ms(page)
        page.get_by_role("button", name=mute).click()  # ...and stops: the app asks for a key
        wait(page, heard(asked, loud_ms=1500, then_quiet_ms=800))
        started = now_ms(page)
        page.get_by_role("button", name="5", exact=True).click()  # the app starts its story
        wait(page, heard(started, loud_ms=1500))
        before = page.evaluate(spoken)
        page.get_by_role("button", name=mute).click()  # the caller talks over it
        wait(page, "document.querySelector('#events li[data-type=clear]') !== null")
        wait(page, "window.phone.timeline.bargeIns.some((b) => b.clear_ms !== null)")
        settings = page.evaluate("window.phone.microphone()")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "phone-timeline.png"
        page.locator("section.timeline").screenshot(path=shot)
        wait(page, f"{spoken} > {before}")  # the caller is done...
        done = last_speech_end_ms(page)
        page.get_by_role("button", name=mute).click()
        wait(page, heard(done, loud_ms=1000, then_quiet_ms=800))  # ...the app says goodbye
        page.get_by_role("button", name="Hang up").click()
        wait(page, "window.phone.report !== null")
        events = page.locator("section.events").bounding_box()
        height = events["y"] + events["height"] + 16  # the controls, timeline and events
        page.screenshot(
            path=ARTIFACTS / "phone-call.png", clip=dict(x=0, y=0, width=1200, height=height)
        )
        page.screenshot(path=ARTIFACTS / "phone-page.png", full_page=True)
        report = page.evaluate("window.phone.report")
        clear_line = page.locator("#events li[data-type=clear]").first.inner_text()
        assert errors == []
    assert process.popen.returncode == 0, process.output()
    assert settings["echoCancellation"] is True  # the default: the app does not hear itself
    assert shot.stat().st_size > 10_000
    assert "clear:" in clear_line and "discarded" in clear_line
    assert report["groups"] == [] and report["clears"] == 1
    # The story, cut (on a busy machine the caller may also talk over the goodbye: the demo
    # lets it play).
    [barge_in] = [b for b in report["barge_ins"] if b["clear_ms"] is not None]
    assert barge_in["heard_ms"] > 1000 and barge_in["discarded_ms"] > 0


class ClickApp:
    """A Media Streams app that answers each click it hears with a click of its own at once,
    and notes when (wall-clock seconds) it heard and answered each."""

    def __init__(self) -> None:
        self.heard: list[float] = []
        self.answered: list[float] = []
        self._click = mulaw.encode(click(5, 8000).tobytes()).ljust(160, b"\xff")

    async def __call__(self, websocket: Any) -> None:
        stream_sid = None
        onsets = OnsetDetector(8000)
        async for text in websocket:
            frame = json.loads(text)
            if frame["event"] == "start":
                stream_sid = frame["streamSid"]
            elif frame["event"] == "media":
                now = time.time()
                payload = base64.b64decode(frame["media"]["payload"])
                samples = np.frombuffer(mulaw.decode(payload), dtype="<i2")
                if onsets.find(samples):
                    self.heard.append(now)
                    reply = base64.b64encode(self._click).decode()
                    answer = {
                        "event": "media",
                        "streamSid": stream_sid,
                        "media": {"payload": reply},
                    }
                    await websocket.send(json.dumps(answer))
                    self.answered.append(time.time())


class OnsetDetector:
    """A sample at a quarter of full scale or more, the first for 100 ms (the page's probe)."""

    def __init__(self, rate: int) -> None:
        self._needed = rate // 10
        self._since_loud = self._needed

    def find(self, samples: Samples) -> bool:
        found = False
        for level in np.abs(samples.astype(np.int32)) / 32768:
            if level >= 0.25:
                found = found or self._since_loud >= self._needed
                self._since_loud = 0
            else:
                self._since_loud += 1
        return found


def click(duration_ms: int, rate: int) -> Samples:
    """A short 1 kHz burst, at 0.6 of full scale."""
    t = np.arange(duration_ms * rate // 1000) / rate
    return (np.sin(2 * np.pi * 1000 * t) * 0.6 * 32767).astype(np.int16)


@contextmanager
def click_app() -> Iterator[tuple[str, ClickApp]]:
    """The app on a free port of 127.0.0.1, in a thread: its stream URL."""
    import websockets

    app = ClickApp()
    ready: queue.Queue[int] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        async with websockets.serve(app, "127.0.0.1", 0) as server:
            ready.put(server.sockets[0].getsockname()[1])
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{ready.get(timeout=30)}/media-stream", app
    finally:
        stop.set()
        thread.join(timeout=30)


def clock_offset_ms(page: Any) -> float:
    """The page's wall clock minus this process's, in ms, from the quickest of 20 readings."""
    readings = []
    for _ in range(20):
        before = time.time()
        page_ms = page.evaluate("performance.timeOrigin + performance.now()")
        after = time.time()
        readings.append((after - before, page_ms - 500 * (before + after)))
    return min(readings)[1]


def pair_up(starts: list[float], ends: list[float], within_ms: float = 500) -> list[float]:
    """For each start, the time to the first end after it (within ``within_ms``)."""
    gaps = []
    for start in starts:
        later = [end - start for end in ends if 0 < end - start < within_ms]
        if later:
            gaps.append(min(later))
    return gaps


def test_latency_from_the_microphone_to_the_app_and_back(tmp_path: Path) -> None:
    """Clicks at uneven intervals go from the page's microphone to an app that answers each at
    once; the figures go to docs/phone.md (and build/test-artifacts/), not into assertions."""
    gaps_ms = [900, 1100, 800, 1300, 1000, 1200, 850, 1150, 950, 1050, 1250, 900]
    track = np.zeros(sum(gaps_ms) * MIC_RATE // 1000 + MIC_RATE, dtype=np.int16)
    at = MIC_RATE // 2
    for gap in gaps_ms:
        burst = click(5, MIC_RATE)
        track[at : at + len(burst)] = burst
        at += gap * MIC_RATE // 1000
    microphone = write_wav(tmp_path / "clicks.wav", track, MIC_RATE)
    with (
        click_app() as (stream_url, app),
        phone(stream_url, tmp_path / "out") as (url, _),
        chromium(microphone, tmp_path / "profile") as browser,
    ):
        page, errors = open_page(browser, url + "?probe=1")
        page.get_by_role("button", name="Call").click()
        wait(page, "window.phone.state() === 'connected'")
        wait(page, f"window.phone.timeline.nowMs >= {sum(gaps_ms) + 1000}", timeout_s=90)
        page.get_by_role("button", name="Hang up").click()
        wait(page, "window.phone.report !== null")
        probes = page.evaluate("window.phone.probes()")
        offset = clock_offset_ms(page)
        assert errors == []
    heard = [1000 * t + offset for t in app.heard]
    answered = [1000 * t + offset for t in app.answered]
    inbound = pair_up(probes["capture"], heard)
    outbound = pair_up(answered, probes["playback"])
    figures = {
        name: {
            "clicks": len(gaps),
            "min": round(min(gaps), 1),
            "median": round(statistics.median(gaps), 1),
            "max": round(max(gaps), 1),
        }
        for name, gaps in (("microphone_to_app_ms", inbound), ("app_to_speaker_ms", outbound))
        if gaps
    }
    figures["output_latency_ms"] = probes["outputLatencyMs"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "phone-latency.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("latency:", json.dumps(figures))
    # Each way, most clicks were followed through (the figures are then worth reading).
    assert len(inbound) >= len(gaps_ms) - 3, (probes, heard)
    assert len(outbound) >= len(gaps_ms) - 3, (probes, answered)
