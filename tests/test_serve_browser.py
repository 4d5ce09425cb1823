"""recog-serve in a real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium): a line of ink drawn on the pad through pointer events is shown as the text
recog-transcribe gives for the strokes the page recorded, an uploaded WAV as the text it gives
for the file; no JavaScript console error; a screenshot is kept with the test's files.
Skipped without the browser, except under CI=true, where .ci/run installs it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from recog.cli import transcribe
from recog.data.manifest import read_strokes
from tests.test_transcribe import ink_checkpoint, speech  # noqa: F401  (fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)


def _need_browser() -> None:
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if not p]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        missing.append("uvicorn")
    if missing:
        why = f"the browser test needs {', '.join(missing)} (apt-get install chromium " \
              "chromium-driver; pip install -e '.[dev]')"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, speech: tuple  # noqa: F811
           ) -> Iterator[dict]:
    """recog-serve with the tiny ink and speech models, on a free port of 127.0.0.1."""
    _need_browser()
    ink_ckpt, ink_paths = ink_checkpoint(tmp_path_factory.mktemp("ink"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-c", "from recog.serve.command import serve; serve()",
               str(ink_ckpt), str(speech[0]), "--port", str(port)]
    log = tmp_path_factory.mktemp("log") / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                raise AssertionError(f"recog-serve exited: {log.read_text()}")
            try:
                urllib.request.urlopen(url + "/api/models", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        yield {"url": url, "ink": (ink_ckpt, ink_paths), "speech": speech}
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def browser(server: dict) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1100,1300", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_script_timeout(30)
    try:
        driver.get(server["url"] + "/")
        _until(driver, "return window.recog && window.recog.ready === true")
        yield driver
    finally:
        driver.quit()


def _until(driver: object, script: str, seconds: float = 30.0) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = driver.execute_script(script)  # type: ignore[attr-defined]
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def _cli_text(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    capsys.readouterr()
    transcribe([*argv, "--json"])
    return json.loads(capsys.readouterr().out)[0]["text"]


def _no_console_errors(driver: object) -> None:
    logs = driver.get_log("browser")  # type: ignore[attr-defined]
    assert [e for e in logs if e["level"] == "SEVERE"] == [], logs


def test_drawn_ink_shows_recog_transcribes_text(server: dict, browser: object,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By

    ckpt, paths = server["ink"]
    strokes = read_strokes(paths[2])  # "abba", one stroke per character
    pad = browser.find_element(By.ID, "pad")  # type: ignore[attr-defined]
    width, height = pad.size["width"], pad.size["height"]
    x0 = min(float(s[:, 0].min()) for s in strokes)
    y0 = min(float(s[:, 1].min()) for s in strokes)
    y1 = max(float(s[:, 1].max()) for s in strokes)
    scale = 0.5 * height / (y1 - y0)
    for stroke in strokes:  # offsets from the pad's centre, in CSS pixels
        actions = ActionBuilder(browser, duration=20)
        pointer = actions.pointer_action
        for k, (x, y, _) in enumerate(stroke):
            pointer.move_to(pad, int(round((x - x0) * scale - width / 2 + 40)),
                            int(round((y - y0) * scale - height / 4)))
            if k == 0:
                pointer.pointer_down()
        pointer.pointer_up()
        actions.perform()
    state = browser.find_element(By.ID, "ink-state")  # type: ignore[attr-defined]
    _until(browser, "return document.getElementById('ink-state').textContent === 'final'")
    shown = browser.find_element(By.ID, "ink-text").text  # type: ignore[attr-defined]
    sent = browser.execute_script("return window.recog.strokes")  # type: ignore[attr-defined]
    assert len(sent) == len(strokes) and state.text == "final"
    recorded = tmp_path / "drawn.json"
    recorded.write_text(json.dumps({"strokes": sent}))
    assert shown == _cli_text([str(ckpt), str(recorded)], capsys) == "abba"
    spans = browser.execute_script(  # type: ignore[attr-defined]
        "return window.recog.ink.times.map(t => t.ink.length)")
    assert len(spans) == 4 and all(spans)  # each character has ink to highlight
    browser.save_screenshot(str(tmp_path / "ink.png"))  # type: ignore[attr-defined]
    assert (tmp_path / "ink.png").stat().st_size > 0
    _no_console_errors(browser)


def test_uploaded_wav_shows_recog_transcribes_text(server: dict, browser: object,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    from selenium.webdriver.common.by import By

    ckpt, wavs, expected = server["speech"]
    browser.find_element(By.ID, "file").send_keys(str(wavs[1]))  # type: ignore[attr-defined]
    _until(browser, "return /tokens$/.test(document.getElementById('speech-state')"
           ".textContent)")
    shown = browser.find_element(By.ID, "speech-text").text  # type: ignore[attr-defined]
    assert shown.strip() == _cli_text([str(ckpt), str(wavs[1])], capsys) == expected[1]
    frames = browser.execute_script(  # type: ignore[attr-defined]
        "return window.recog.speech.posteriors.length")
    assert frames > 0
    browser.save_screenshot(str(tmp_path / "page.png"))  # type: ignore[attr-defined]
    _no_console_errors(browser)


def test_recording_from_the_microphone_is_recognised(server: dict, browser: object) -> None:
    """Chromium's fake microphone (a beep): Record, Stop, and the recording comes back
    recognised (whatever the tiny model makes of a beep) with its posteriorgram."""
    from selenium.webdriver.common.by import By

    browser.execute_script("window.recog.speech = null")  # type: ignore[attr-defined]
    button = browser.find_element(By.ID, "record")  # type: ignore[attr-defined]
    button.click()
    _until(browser, "return document.getElementById('record').textContent === 'Stop'")
    _until(browser, "return document.getElementById('speech-state').textContent === "
           "'recording\u2026'")
    time.sleep(1.0)
    button.click()
    result = _until(browser, "return window.recog.speech")
    assert len(result["posteriors"]) > 50  # > 0.5 s of 10 ms frames
    assert browser.find_element(By.ID, "error").text == ""  # type: ignore[attr-defined]
    _no_console_errors(browser)
