"""The built documentation site, opened in headless Chromium without network access.

For every page, from ``file://`` and from a local HTTP server: no raw TeX (``\\(``, ``\\[``, ``\\frac``,
``\\theta`` or any other ``\\command``) is left in the rendered text outside code, every math span was
typeset, the console shows no error, every image loads, and nothing is requested from the network. One
full-page screenshot per page is saved under ``$COLAYERS_DOCS_SCREENSHOTS`` (default: the pytest temporary
directory), for a person to look at.

Chromium comes from the system (Debian's ``chromium`` package: ``apt-get install -y chromium``; ``$CHROMIUM``
names another executable). Without one the test is skipped, except under CI (``$CI`` set), where it fails.

The browser check and the tutorials' figures need the site built with its tutorials run: they are marked
``slow`` and run with ``pytest --runslow tests/docs`` (a line of its own in ``.ci/run``); plain ``pytest``
builds the site with the tutorials shown, not run, and checks the pages, the navigation and the API reference
(tests/docs/conftest.py).
"""

import functools
import http.server
import os
import pathlib
import re
import subprocess
import sys
import threading

import pytest

from tests.docs.cdp import Browser, Page, find_chromium

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).with_suffix(".html").as_posix() for p in DOCS.rglob("*.md"))

# Text nodes outside code and outside typeset math: any TeX control sequence or math delimiter left there
# means a formula did not render (or was written outside a math span).
RAW_TEX = r"""
(() => {
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "MJX-CONTAINER"]);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let e = node.parentElement; e; e = e.parentElement) if (skip.has(e.tagName)) return NodeFilter.FILTER_REJECT;
      return NodeFilter.FILTER_ACCEPT;
    },
  });
  const found = [];
  const pattern = /\\(?:[()\[\]]|[A-Za-z]+)/g;
  for (let node; (node = walker.nextNode());) {
    for (const m of node.data.matchAll(pattern)) found.push(node.data.slice(Math.max(0, m.index - 30), m.index + 40));
  }
  return found;
})()
"""
UNTYPESET = "[...document.querySelectorAll('.arithmatex')].filter(e => !e.querySelector('mjx-container')).length"
MATH_SPANS = "document.querySelectorAll('.arithmatex').length"
BROKEN_IMAGES = "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.currentSrc || i.src)"
MATHJAX_READY = (
    "(window.MathJax && MathJax.startup && MathJax.startup.promise)"
    " ? MathJax.startup.promise.then(() => 'typeset') : 'no MathJax'"
)


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the docs browser test: apt-get install -y chromium")
        pytest.skip("no Chromium on PATH (apt-get install -y chromium, or set $CHROMIUM)")
    b = Browser(executable)
    yield b
    b.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    where = os.environ.get("COLAYERS_DOCS_SCREENSHOTS")
    path = pathlib.Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_pages_are_the_docs():
    assert "index.html" in PAGES and "losses.html" in PAGES and len(PAGES) >= 8


def test_every_page_is_built_and_in_the_nav(site):
    # The strict build (the `site` fixture, tests/docs/conftest.py) succeeded; every page is in the nav and built.
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        source = page.removesuffix(".html") + ".md"
        assert source in nav, f"{source} is not in mkdocs.yml's nav"
        assert (site / page).exists(), f"mkdocs built no {page}"
    for source in re.findall(r":\s*(\S+\.md)\s*$", nav, re.M):
        assert (DOCS / source).exists(), f"mkdocs.yml's nav names {source}, which does not exist"


TUTORIALS = sorted(p.relative_to(DOCS).as_posix() for p in (DOCS / "tutorials").glob("*.md"))


@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_tutorial_has_build_time_code_and_no_committed_image(tutorial):
    text = (DOCS / tutorial).read_text()
    assert 'exec="true"' in text, f"{tutorial} has no block that runs at build time"
    committed = re.search(r"!\[[^]]*\]\((?!data:)[^)]*\.(png|svg|gif|jpg)\)", text)
    assert not committed, f"{tutorial} links a committed image: {committed[0]}"


@pytest.mark.slow  # needs the build that runs the tutorials (--runslow)
@pytest.mark.parametrize("tutorial", TUTORIALS)
def test_tutorial_runs_at_build_time_and_draws_its_figures(tutorial, site):
    # A tutorial's code runs in the build (markdown-exec) and its figures are the PNGs that code drew, embedded
    # in the page: none is a file committed by hand.
    html = (site / tutorial.replace(".md", ".html")).read_text()
    assert html.count('src="data:image/png;base64,') >= 1, f"{tutorial}: no figure drawn by its code"


@pytest.mark.slow  # the published site: the build that runs the tutorials (--runslow)
@pytest.mark.parametrize("scheme", ["file", "http"])
@pytest.mark.parametrize("page_name", PAGES)
def test_page_renders_offline(page_name, scheme, site, server, browser, screenshots):
    assert (site / page_name).exists(), f"mkdocs built no {page_name}"
    url = (site / page_name).as_uri() if scheme == "file" else f"{server}/{page_name}"
    allowed = ("file:", "data:", "blob:", "about:") if scheme == "file" else (server + "/", "data:", "blob:", "about:")
    page = Page(browser)
    try:
        page.load(url)
        state = page.evaluate(MATHJAX_READY)
        raw = page.evaluate(RAW_TEX)
        untypeset, spans = page.evaluate(UNTYPESET), page.evaluate(MATH_SPANS)
        broken = page.evaluate(BROKEN_IMAGES)
        if scheme == "file":
            page.screenshot(screenshots / (page_name.replace("/", "_").removesuffix(".html") + ".png"))
        errors, requested = page.problems()
    finally:
        page.close()
    assert not raw, f"{page_name}: raw TeX in the rendered text ({len(raw)}): {raw[:5]}"
    assert untypeset == 0, f"{page_name}: {untypeset} of {spans} math spans were not typeset (MathJax: {state})"
    assert not errors, f"{page_name}: browser errors: {errors}"
    assert not broken, f"{page_name}: images that did not load: {broken}"
    outside = [u for u in requested if not u.startswith(allowed)]
    assert not outside, f"{page_name}: requests outside the site: {outside}"


API_MODULES = ["layers", "losses", "oracles", "perturb", "metrics", "studies"]


@pytest.mark.parametrize("module", API_MODULES)
def test_api_page_documents_every_public_name(module, site):
    # Each name of the module's __all__ has its anchor (a rendered heading) on the module's API page.
    import importlib
    import importlib.util
    import re

    spec = importlib.util.spec_from_file_location("api_pages", DOCS / "hooks" / "api_pages.py")
    api_pages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(api_pages)

    names = importlib.import_module(f"colayers.{module}").__all__
    html = (site / "api" / f"{module}.html").read_text()
    ids = set(re.findall(r'id="(colayers\.[^"]+)"', html))
    missing = [n for n in names if api_pages.anchor(module, n) not in ids]
    assert not missing, f"api/{module}.html does not document {missing}"


def test_api_top_level_page_links_every_name(site):
    import colayers

    html = (site / "api" / "colayers.html").read_text()
    missing = [n for n in colayers.__all__ if f"<code>{n}</code>" not in html and f"colayers.{n}" not in html]
    assert not missing, f"api/colayers.html does not list {missing}"


def test_a_docs_build_past_its_time_limit_says_so_and_names_its_log(tmp_path):
    # The fixture's own limit ($COLAYERS_DOCS_TIMEOUT; by default 30 s under pytest's per-test timeout) ends the
    # build and names it, instead of pytest's timeout naming only a test.
    env = {**os.environ, "COLAYERS_DOCS_TIMEOUT": "0.01", "COLAYERS_DOCS_SITE": str(tmp_path / "site")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header",
         "tests/docs/test_site.py::test_every_page_is_built_and_in_the_nav"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("the docs build (mkdocs build --strict, tutorials shown, not run) did not finish within 0.01 s "
            f"($COLAYERS_DOCS_TIMEOUT); its output so far: {tmp_path / 'site.log'}") in done.stdout, done.stdout
    assert (tmp_path / "site.log").exists()
