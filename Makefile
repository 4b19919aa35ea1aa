# Two commands do all the setup on a fresh Debian/Ubuntu machine:
#   make demo   - the exporter on the shipped example network, with a simulated network
#   make test   - the whole test suite, with the real tools it needs (installed if missing)

VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
# Debian packages the tests run for real: Prometheus + promtool, Alertmanager + amtool,
# sipp, fping, iproute2 (network namespaces), openssl (test certificates), util-linux
# (setpriv, to drop CAP_NET_RAW), docker-compose (checks docker-compose.yml; no engine
# needed), chromium (renders the HTML report headless).
TEST_DEBS := curl prometheus prometheus-alertmanager sip-tester fping iproute2 openssl util-linux docker-compose chromium
TEST_TOOLS := curl prometheus promtool prometheus-alertmanager amtool sipp fping ip openssl setpriv docker-compose chromium

.PHONY: setup demo test lint test-deps clean

$(BIN)/.installed: pyproject.toml
	@tools/bootstrap-venv.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

setup: $(BIN)/.installed

demo: setup
	@tools/demo.sh

test-deps:
	@tools/install-debs.sh "$(TEST_TOOLS)" $(TEST_DEBS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup test-deps lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info exporter/*.egg-info
