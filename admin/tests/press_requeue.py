"""Presses a requeue button of reqpool-outbox's status page in headless
Chromium (Debian's chromium and chromium-driver, python3-selenium), as a
person would: a wrong token first (refused), then the right one, then
reloads the page until the job shows as delivered.

usage: press_requeue.py URL JOB_ID TOKEN DELIVERED_BEFORE
Prints one line per step; exits 0 when the page shows the job delivered,
non-zero otherwise. Every wait is bounded (20 s each).
"""

import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, job, token, before = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
opts = Options()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(20)
wait = WebDriverWait(driver, 20)
try:
    def press(with_token):
        driver.get(url)
        row = driver.find_element(By.ID, "job-" + job)
        row.find_element(By.NAME, "token").send_keys(with_token)
        row.find_element(By.ID, "requeue-" + job).click()

    press("not-the-token-at-all")
    wait.until(lambda d: d.find_elements(By.ID, "why"))
    print("wrong token:", driver.find_element(By.ID, "why").text)
    assert driver.find_element(By.ID, "why").text == "wrong token"

    press(token)
    wait.until(lambda d: "requeued=" in d.current_url)
    print("flash:", driver.find_element(By.ID, "flash").text)

    def delivered(d):
        d.get(url)
        return int(d.find_element(By.ID, "delivered").text) > before

    wait.until(delivered)
    print("delivered:", driver.find_element(By.ID, "delivered").text,
          "dead:", driver.find_element(By.ID, "dead").text)
finally:
    driver.quit()
