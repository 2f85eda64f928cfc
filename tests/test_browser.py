"""The demo storefront and the dashboards in a real browser: Debian's headless Chromium with Selenium,
against a live server on the test database.

A shopper searches (with suggestions), filters by a facet, opens a result, opens a similar item, asks
for "for you", chats and clicks an ad; every call goes through the public API, and the clicks land in
the logs that the online metrics aggregate, which the dashboard then plots. Screenshots go to
``$SCREENSHOT_DIR`` (default: the test's tmp folder). Chromium missing is a skip on a workstation and a
failure on CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from catalog.models import Event
from catalog.services import embed_products
from chatbot.models import Message
from monitoring import services as monitoring
from monitoring.models import MetricValue
from recommend.models import RecommendationLog
from search.models import SearchClick
from tests.ads.conftest import AdFactory, AdSlotFactory, CampaignFactory
from tests.chatbot.conftest import GREETINGS
from tests.factories import CustomerFactory, EventFactory, ProductFactory

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
PASSWORD = "browse-operator-1"
TITLES = [
    ("Cordless drill driver 18V", "Makita", "tools/drills"),
    ("Hammer drill 1/2 in corded", "DeWalt", "tools/drills"),
    ("Drill bit set titanium 29 pieces", "Bosch", "tools/accessories"),
    ("Claw hammer 16 oz", "Estwing", "tools/hand"),
    ("Garden hose 50 ft", "Flexzilla", "garden/watering"),
    ("Ceiling fan with light kit", "Hunter", "home/fans"),
]


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are needed on CI (platform/install.sh --dev installs them)")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def shop(transactional_db, tiny_active_version, django_user_model):
    """Products with embeddings, a customer with history, two taught intents, a paid ad slot, an operator."""
    from ads import services as ads
    from chatbot import services as chat
    from search import services as search

    search.reset_caches()  # the catalogue's vocabulary (typo correction) of an earlier test's products
    ads.reset_caches()  # the serving ad catalogue (kept 5 s) of an earlier test's ads
    products = [ProductFactory(title=t, brand=b, category_path=c, price=Decimal("19.99")) for t, b, c in TITLES]
    embed_products(product_ids=[p.pk for p in products])
    shopper = CustomerFactory(external_id="shopper-1")
    for product in products[:3]:
        EventFactory(customer=shopper, product=product, type=Event.Type.PURCHASE)
    chat.reset_caches()
    chat.teach_intent(name="greeting", examples=GREETINGS, answer="Hello! How can I help?")
    AdSlotFactory(name="search-top")
    AdFactory(campaign=CampaignFactory(bid_per_click=Decimal("1.50")), title="Drill sale", text="20% off drills")
    django_user_model.objects.create_user("operator", password=PASSWORD, is_staff=True, is_superuser=True)
    yield products
    chat.reset_caches()
    search.reset_caches()


def screenshots() -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or "var/screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(driver, css: str, *, count: int = 1, text: str | None = None):
    """The elements matching ``css`` once there are ``count`` of them (and one holds ``text``)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d):
        elements = d.find_elements(By.CSS_SELECTOR, css)
        if len(elements) < count or (text and not any(text in e.text for e in elements)):
            return False
        return elements

    return WebDriverWait(driver, 30).until(found, message=f"waiting for {css} ({text or count})")


def log_in(driver, base: str, next_url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/admin/login/?next={next_url}")
    driver.find_element(By.NAME, "username").send_keys("operator")
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def search_with_a_suggestion_and_a_facet(driver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "search-input")
    box.send_keys("dril")
    wait_for(driver, "#suggestions li", text="drill")
    box.send_keys(Keys.ENTER)
    wait_for(driver, "#results li", count=2)
    assert "drill" in driver.find_element(By.ID, "search-summary").text
    wait_for(driver, "#facets a", text="tools/drills")[0].click()
    wait_for(driver, "#facets a.selected", text="tools/drills")
    assert all("rill" in li.text for li in driver.find_elements(By.CSS_SELECTOR, "#results li"))


def test_a_shopper_uses_the_demo_storefront_and_the_dashboard_shows_it(browser, live_server, shop):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    log_in(browser, live_server.url, "/demo/")
    wait_for(browser, "#search-input")
    search_with_a_suggestion_and_a_facet(browser)
    first = wait_for(browser, "#results li")[0]
    title = first.text.split("$")[0].strip()
    first.click()
    assert wait_for(browser, "#product-title", text=title)
    pick = wait_for(browser, "#similar li", count=2)[0]
    picked = pick.text  # its title, then its reason
    pick.click()
    opened = wait_for(browser, "#product-title")[0]
    WebDriverWait(browser, 30).until(lambda d: opened.text != title and picked.startswith(opened.text))

    browser.find_element(By.ID, "for-you-load").click()
    wait_for(browser, "#for-you li", count=2)

    browser.find_element(By.ID, "chat-input").send_keys("hello there")
    browser.find_element(By.CSS_SELECTOR, "#chat-form button").click()
    wait_for(browser, "#chat-log li.bot", text="Hello! How can I help?")

    wait_for(browser, "#ad-slot li", text="Drill sale")[0].click()
    wait_for(browser, "#ad-slot .note", text="click recorded")
    browser.save_screenshot(str(screenshots() / "demo-storefront.png"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#api-log li.error")

    # what the browser did is in the logs, attributed
    assert SearchClick.objects.filter(product__title=title).exists()
    clicked = Event.objects.exclude(rec_id="").get()
    assert RecommendationLog.objects.filter(rec_id=clicked.rec_id, kind="similar").exists()
    assert Message.objects.filter(text="hello there", intent__name="greeting").exists()
    monitoring.refresh()
    day = MetricValue.objects.filter(granularity="day", version="all")  # summed: a run may cross midnight

    def total(metric: str, **where) -> float:
        return sum(day.filter(metric=metric, **where).values_list("value", flat=True))

    assert total("recommend.clicks", dimension="text") == 1 and total("ads.clicks") == 1
    assert total("search.ctr") > 0
    see_the_dashboards(browser, live_server.url)


def see_the_dashboards(driver, base: str) -> None:
    """Each app's dashboard draws its charts with Chart.js (vendored by install.sh) from the refreshed rows."""
    from selenium.webdriver.common.by import By

    for app, metric in [("search", "search.ctr"), ("recommend", "recommend.clicks"), ("chatbot", "chatbot.messages"),
                        ("ads", "ads.clicks")]:  # fmt: skip
        driver.get(f"{base}/admin/monitoring/metricvalue/dashboard/{app}/")
        canvas = wait_for(driver, f'canvas[data-chart="{metric}"]')[0]
        drawn = driver.execute_script("return window.Chart && Chart.getChart(arguments[0]) ? true : false", canvas)
        assert drawn, f"{metric} was not drawn on the {app} dashboard"
        assert not driver.find_elements(By.CSS_SELECTOR, ".errornote")
        driver.save_screenshot(str(screenshots() / f"dashboard-{app}.png"))
