"""The cluster's UI in a real browser: Debian's chromium driven by chromedriver (selenium), offline.

Log in through the FAB login form, open dialog_etl, trigger it from the trigger form with a
target_date, see the run succeed in the grid, and open the DWH helper's docs page from the Docs menu.
Every host but 127.0.0.1 resolves to nothing and every other request goes to a closed proxy port, so a
page that needs the internet renders blank. Screenshots go to ``.artifacts/ui/`` (git-ignored).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.cluster.conftest import ADMIN_USER, DAYS
from tests.conftest import REPO_ROOT

ARTIFACTS = REPO_ROOT / ".artifacts" / "ui"
OFFLINE_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
]


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in OFFLINE_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(15)
    return driver


def wait_for(condition, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except WebDriverException:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.5)


def drive_ui(url: str, user: str, password: str, target_date: str, shots: Path, run_state) -> str:
    """Walk through the UI; ``run_state(run_id)`` reads a run's state from the REST API. Returns the
    run id of the run the trigger form made."""
    shots.mkdir(parents=True, exist_ok=True)
    driver = chromium()
    try:
        driver.get(f"{url}/auth/login/")
        driver.find_element(By.NAME, "username").send_keys(user)
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.save_screenshot(str(shots / "1-login.png"))
        driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait_for(lambda: "/auth/login" not in driver.current_url, 60, "the login form did not log in")

        driver.get(f"{url}/dags/dialog_etl")
        trigger = wait_for(
            lambda: [b for b in driver.find_elements(By.CSS_SELECTOR, "button") if b.text == "Trigger"],
            60,
            "no Trigger button on the dialog_etl page",
        )[0]
        driver.save_screenshot(str(shots / "2-dag.png"))
        trigger.click()
        date_input = driver.find_element(By.ID, "element_target_date")
        year, month, day = target_date.split("-")
        date_input.send_keys(month + day + year)
        driver.save_screenshot(str(shots / "3-trigger-form.png"))
        # The form's own Trigger button (the page's opened the form).
        [b for b in driver.find_elements(By.CSS_SELECTOR, "button") if b.text == "Trigger"][-1].click()
        run_path = wait_for(
            lambda: "/runs/" in driver.current_url and driver.current_url.split("/runs/")[1].split("/")[0],
            60,
            f"the trigger form did not open the new run ({driver.current_url})",
        )
        run_id = run_path.replace("%3A", ":").replace("%2B", "+")
        state = wait_for(
            lambda: run_state(run_id) in ("success", "failed") and run_state(run_id),
            300,
            f"run {run_id} did not finish",
        )
        assert state == "success", f"run {run_id} {state}"
        driver.get(f"{url}/dags/dialog_etl/runs/{run_path}")
        wait_for(
            lambda: "success" in driver.find_element(By.TAG_NAME, "body").text.lower(),
            60,
            "the run page does not show success",
        )
        driver.save_screenshot(str(shots / "4-run-success.png"))

        driver.get(f"{url}/dags/dialog_etl")
        # the page re-renders while it loads: look the button up until one is found (and not stale)
        wait_for(
            lambda: [b for b in driver.find_elements(By.CSS_SELECTOR, "button") if b.text == "Docs"],
            60,
            "no Docs menu",
        )[0].click()
        wait_for(
            lambda: [
                e
                for e in driver.find_elements(By.CSS_SELECTOR, "[role=menuitem], a")
                if e.text == "DWH Helper API"
            ],
            30,
            "no DWH Helper API in the Docs menu",
        )[0].click()
        frame = wait_for(lambda: driver.find_elements(By.TAG_NAME, "iframe"), 60, "no docs frame")[0]
        driver.switch_to.frame(frame)
        operations = wait_for(
            lambda: driver.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"),
            60,
            "Swagger UI did not render offline",
        )
        assert len(operations) > 3
        driver.switch_to.default_content()
        driver.save_screenshot(str(shots / "5-dwh-helper-docs.png"))
        return run_id
    except BaseException:
        driver.save_screenshot(str(shots / "failure.png"))
        raise
    finally:
        driver.quit()


@pytest.mark.timeout(900)
def test_login_trigger_with_target_date_and_docs_page_in_chromium(cluster, world):
    day = DAYS[2].isoformat()
    run_id = drive_ui(
        cluster.url,
        ADMIN_USER,
        cluster.password,
        day,
        ARTIFACTS,
        lambda run_id: cluster.ok("GET", f"/api/v2/dags/dialog_etl/dagRuns/{run_id}")["state"],
    )
    run = cluster.ok("GET", f"/api/v2/dags/dialog_etl/dagRuns/{run_id}")
    assert run["conf"]["target_date"] == day
    assert cluster.xcom("dialog_etl", run_id, "summary")["target_date"] == day
