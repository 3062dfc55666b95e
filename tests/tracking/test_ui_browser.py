"""`rkdbench ui` in a real browser: a store of fabricated cell runs (no training), the server started as a user
would start it, and headless Chromium on the URL it prints: the runs, sorted by AutoAttack accuracy, with the
headline metrics as columns. A screenshot goes to tmp_path (and to $RKDBENCH_ARTIFACTS_DIR when set).

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package (the `test` extra): skipped without
them, except under CI (`$CI` set), where a missing browser fails the test so that it cannot pass unnoticed."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from rkdbench.leaderboard.mlflow_view import VIEW_ID, VIEW_NAME, VIEW_TAG, experiment_url, install_views
from rkdbench.tracking import Tracker
from support.leaderboard_runs import fabricated_run
from support.processes import answers, free_port, start_logged, stop_group, wait_until

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PROTOCOL = "digits-linf"
N_ROBUST = {"ard": 65, "rslad": 78, "pgd-at": 81}  # of the helper's 100 points: AutoAttack 0.65, 0.78, 0.81
SERVER_START_S, PAGE_S = 180, 60  # generous: the test machine is loaded


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        reason = f"browser test needs {', '.join(missing)} (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)


def _js_number(value: float) -> str:
    """A metric as MLflow's runs table shows it (JavaScript's String(number)) for the values used here."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@pytest.fixture
def chromium():
    """Skips (fails under CI) before anything else is set up when the browser is missing."""
    _require_browser()


@pytest.fixture
def store(tmp_path):
    tracker = Tracker(tmp_path / "results")
    experiment = tracker.experiment_id(PROTOCOL, {"rkdbench.protocol": PROTOCOL})
    for method, robust in N_ROBUST.items():
        run_id = fabricated_run(tracker, experiment, tmp_path, method, 0, [True] * robust + [False] * (100 - robust))
        tracker.set_tags(run_id, {"rkdbench.protocol": PROTOCOL})
    return tracker


@pytest.fixture
def ui_server(chromium, store, tmp_path):
    """`rkdbench ui` on a free port; yields the experiment URL it printed and its output so far. Always stopped
    (its whole process group: the MLflow server and its workers)."""
    port, log = free_port(), tmp_path / "ui.log"
    proc = start_logged(
        [sys.executable, "-m", "rkdbench.cli", "ui", "--results", str(store.results), "--port", str(port)], log
    )
    base, printed = f"http://127.0.0.1:{port}", []

    def serving() -> bool:
        match = re.search(rf"^  {re.escape(PROTOCOL)}: (\S+)$", log.read_text(errors="replace"), re.M)
        if match and not printed:
            printed.append(match.group(1))
        return bool(printed) and answers(base + "/")

    try:
        wait_until(serving, proc, log, SERVER_START_S, f"rkdbench ui on {base}")
        yield printed[0], log.read_text(errors="replace")
    finally:
        stop_group(proc, 20)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1600,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver, tmp_path) -> Path:
    path = tmp_path / "mlflow-ui.png"
    driver.save_screenshot(str(path))
    if os.environ.get("RKDBENCH_ARTIFACTS_DIR"):
        out = Path(os.environ["RKDBENCH_ARTIFACTS_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / path.name)
    return path


def _table(driver) -> dict[str, list[str]]:
    """The runs grid's cells by column id, in row order (what is rendered; the test's columns fit the window)."""
    from selenium.webdriver.common.by import By

    rows: dict[str, dict[int, str]] = {}
    for cell in driver.find_elements(By.CSS_SELECTOR, "[role=row][row-index] [role=gridcell][col-id]"):
        row = cell.find_element(By.XPATH, "./ancestor::*[@row-index][1]").get_attribute("row-index")
        rows.setdefault(cell.get_attribute("col-id"), {})[int(row)] = cell.text.strip()
    return {column: [cells[i] for i in sorted(cells)] for column, cells in rows.items()}


def test_ui_shows_runs_sorted_by_autoattack_with_headline_columns(chromium, ui_server, browser, tmp_path):
    url, log = ui_server
    assert url.startswith("http://127.0.0.1:") and f"viewStateShareKey={VIEW_ID}" in url, log
    expected = sorted(N_ROBUST, key=N_ROBUST.get, reverse=True)  # AutoAttack accuracy, descending
    names = [f"{method}-0" for method in expected]
    aa = [_js_number(N_ROBUST[method] / 100) for method in expected]
    name_col, aa_col = "attributes.`Run Name`", "metrics.`test.aa_acc`"

    def loaded(driver):
        table = _table(driver)
        return len(table.get(aa_col, [])) == len(table.get(name_col, [])) == len(names) and all(
            name in cell for name, cell in zip(names, table.get(name_col, []))
        )

    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    try:
        WebDriverWait(browser, PAGE_S, poll_frequency=1, ignored_exceptions=(StaleElementReferenceException,)).until(
            loaded
        )
    except TimeoutException:
        pass  # asserted below, with what the page shows
    time.sleep(1)  # let the grid settle before the screenshot
    shot = _screenshot(browser, tmp_path)
    table = _table(browser)
    body = browser.find_element("tag name", "body").text
    assert [cell.splitlines()[-1] for cell in table.get(name_col, [])] == names, (shot, body)
    assert table.get(aa_col) == aa, (shot, body)
    for metric in ("test.clean_acc", "test.pgd20_acc", "test.aa_acc"):
        assert f"metrics.`{metric}`" in table and metric in body, (metric, shot)
    assert VIEW_NAME in body, (shot, body)  # the saved view is the one shown
    assert shot.stat().st_size > 10_000


def test_headline_view_is_written_once(store):
    """No browser needed: the saved view's content, the URL, and a rerun that leaves the tags alone."""
    [(name, experiment_id)] = install_views(store)
    tags = store.client.get_experiment(experiment_id).tags
    envelope = json.loads(tags[VIEW_TAG])
    state = json.loads(envelope["state"])
    assert name == PROTOCOL and envelope["name"] == VIEW_NAME
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert state["orderByKey"] == "metrics.`test.aa_acc`" and state["orderByAsc"] is False
    assert state["selectedColumns"][:3] == [f"metrics.`test.{label}_acc`" for label in ("clean", "pgd20", "aa")]
    assert install_views(store) == [(name, experiment_id)]
    assert store.client.get_experiment(experiment_id).tags == tags  # unchanged: a no-op
    assert experiment_url("http://127.0.0.1:5000", experiment_id) == (
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={VIEW_ID}"
    )


def test_without_a_saved_view_each_experiment_is_sorted_by_its_ranked_label(store):
    """A read-only store gets sorted URLs instead of views: the label each experiment ranks by, from its runs."""
    from rkdbench.leaderboard.mlflow_view import sort_labels, sorted_url

    [(name, experiment_id, label)] = sort_labels(store)
    assert (name, label) == (PROTOCOL, "aa")  # the built-in labels' final attack: AutoAttack
    assert sorted_url("http://h", experiment_id, label).endswith(
        "&orderByKey=metrics.%60test.aa_acc%60&orderByAsc=false"
    )
