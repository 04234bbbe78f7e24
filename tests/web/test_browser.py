"""A real headless browser (Debian chromium + chromedriver, selenium) through the pages.

On real photos: enroll a person from an uploaded photo, see them named on the live page of an
image-folder source, name a stranger and see the new name, ask a question, forget the person
and see them gone. Screenshots of each page go to test-artifacts/web/.
"""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.web.conftest import open_web

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import Exported

pytest.importorskip("selenium")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.network

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not (CHROMEDRIVER.exists() and CHROMIUM.exists()):
        pytest.skip("chromium and chromium-driver are not installed (`make test` adds them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
        "--window-size=430,1100",  # a phone-sized window
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_family_flow_in_a_real_browser(
    tmp_path: Path, face_models: Exported, browser: object
) -> None:
    import uvicorn
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    from rap_edge.web import create_app

    assert isinstance(browser, WebDriver)
    driver = browser
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    photos = {p.name: p for p in face_models.photos}
    session, state, cfg = open_web(tmp_path, face_models)
    # Two image-folder cameras: Barack at the front door, a stranger (Biden) in the garden.
    for cam, photo in (("front", "obama2.jpg"), ("garden", "biden.jpg")):
        (tmp_path / cam).mkdir()
        shutil.copy(photos[photo], tmp_path / cam / photo)
        state.add_source(f"{cam}={tmp_path / cam}", max_fps=4)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(state, cfg), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait = WebDriverWait(driver, 60, poll_frequency=0.2)

    def shot(name: str) -> None:
        driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def names_on(camera: int) -> str:
        el = driver.find_element(By.CSS_SELECTOR, f'[data-camera="{camera}"] [data-names]')
        return str(el.text)

    try:
        wait.until(lambda _: server.started)
        driver.get(f"{base}/people")
        assert "Nobody yet" in driver.page_source
        shot("1-people-empty")

        # Enroll Barack from an uploaded photo; the page shows the face that was found.
        driver.find_element(By.NAME, "name").send_keys("Barack")
        driver.find_element(By.NAME, "info").send_keys("Likes basketball")
        driver.find_element(By.NAME, "photos").send_keys(str(photos["obama.jpg"]))
        driver.find_element(By.CSS_SELECTOR, "#add button").click()
        wait.until(lambda d: "These are the faces found" in d.page_source)
        face = driver.find_element(By.CSS_SELECTOR, "img.face.big")
        wait.until(lambda _: driver.execute_script("return arguments[0].naturalWidth", face) > 0)
        shot("2-person-added")
        person_url = driver.current_url.split("?")[0]

        # A photo with two faces is refused, with the reason.
        two = tmp_path / "two.jpg"
        from tests.web.conftest import side_by_side

        two.write_bytes(side_by_side(photos["obama3.jpg"], photos["biden.jpg"]))
        driver.find_element(By.CSS_SELECTOR, 'form[action$="/photos"] input[type=file]').send_keys(
            str(two)
        )
        driver.find_element(By.CSS_SELECTOR, 'form[action$="/photos"] button').click()
        wait.until(lambda d: "2 faces found" in d.page_source)
        shot("3-photo-refused")

        # Live: Barack is named on the front camera; the stream shows frames.
        driver.get(f"{base}/live")
        wait.until(lambda _: "Barack" in names_on(0))
        stream = driver.find_element(By.CSS_SELECTOR, '[data-camera="0"] img.stream')
        wait.until(lambda _: driver.execute_script("return arguments[0].naturalWidth", stream) > 0)
        shot("4-live-named")

        # Ask a question about what the cameras see.
        driver.find_element(By.NAME, "question").send_keys("Who is here?")
        driver.find_element(By.CSS_SELECTOR, "#ask button").click()
        wait.until(lambda d: "Barack" in d.find_element(By.ID, "answer").text)
        driver.find_element(By.NAME, "question").clear()
        driver.find_element(By.NAME, "question").send_keys("When did you last see Barack?")
        driver.find_element(By.CSS_SELECTOR, "#ask button").click()
        wait.until(lambda d: "I last saw Barack on front" in d.find_element(By.ID, "answer").text)
        shot("5-live-asked")

        # Strangers: the garden's unknown face is a cluster; name it and see the name live.
        def stranger_listed(d: WebDriver) -> bool:
            d.get(f"{base}/strangers")
            return bool(d.find_elements(By.CSS_SELECTOR, "li.cluster"))

        wait.until(stranger_listed)
        shot("6-strangers")
        card = driver.find_element(By.CSS_SELECTOR, "li.cluster")
        card.find_element(By.NAME, "name").send_keys("Joe")
        card.find_element(By.CSS_SELECTOR, 'form[action$="/name"] button').click()
        wait.until(lambda d: "/people/c_" in d.current_url)
        driver.get(f"{base}/live")
        wait.until(lambda _: "Joe" in names_on(1))
        shot("7-live-stranger-named")

        # Forget Barack, after the confirmation; gone from the list and the live view.
        driver.get(f"{person_url}/forget")
        shot("8-forget-confirm")
        driver.find_element(By.CSS_SELECTOR, 'button[name="confirm"]').click()
        wait.until(lambda d: "was forgotten" in d.page_source)
        names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#concepts .name")]
        assert names == ["Joe"]
        shot("9-people-after-forget")
        driver.get(f"{base}/live")
        wait.until(lambda _: "Barack" not in names_on(0) and "Joe" in names_on(1))
        shot("10-live-after-forget")
    finally:
        server.should_exit = True
        state.close()  # ends the MJPEG streams, so the server can stop
        thread.join(15)
        session.close()
