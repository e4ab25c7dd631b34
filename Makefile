# One-line targets for everything a person does. `make run` and `make test` set themselves up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
JARS := .cache/jars/.fetched

export CPC_ENV ?= local
export AIRFLOW_HOME ?= $(CURDIR)/var/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT := 120
export GX_ANALYTICS_ENABLED := False
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(BIN)/python
export PATH := $(CURDIR)/$(BIN):$(PATH)

RUN_DATE = $(shell $(BIN)/cpc conf sample.end_date)
# Models are trained the day before the nightly run: every 30-day label window then ends in the history.
TRAIN_DATE = $(shell date -d "$(RUN_DATE) -1 day" +%F)

.PHONY: help setup run test bench loop cluster-run lint airflow-db airflow-backfill clean

help:
	@echo "make run    - set up, generate sample operator files, run the nightly DAG with Airflow, print where results are"
	@echo "make test   - set up and run the test suite"
	@echo "make bench  - the nightly run at CUSTOMERS (default 100000) over DAYS (90): time per stage, peak memory, the tag engine"
	@echo "              against per-tag queries (PER_TAG tags timed, default 16; 0 skips) and DuckDB -> bench/results"
	@echo "make loop   - closed loop over LOOP_DAYS (8) days at LOOP_CUSTOMERS (20000): responses, evaluation, CPC vs blast vs oracle"
	@echo "make cluster-run - the nightly on a Spark standalone cluster (master + 2 workers on loopback) and on local Spark, compared"
	@echo "make lint   - ruff"
	@echo "make airflow-backfill START=2026-11-18 END=2026-11-20 - the nightly DAG over past dates, run by Airflow's scheduler"
	@echo "make clean  - remove generated data (var/), keep the virtual environment and jars"

$(STAMP): setup.cfg pyproject.toml
	@echo "setup: virtual environment and packages (first time: a minute or two)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(JARS): $(STAMP) jobs/jars.py
	@echo "setup: Delta jars from Maven Central into .cache/jars (once)"
	$(BIN)/python -m jobs.jars fetch
	touch $@

setup: $(STAMP) $(JARS)

airflow-db: setup
	@mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/db-migrate.log; exit 1)
	@# so that a plain `AIRFLOW_HOME=var/airflow airflow ...` sees this project's DAGs and no examples
	@sed -i -e 's|^dags_folder = .*|dags_folder = $(CURDIR)/dags|' -e 's|^load_examples = .*|load_examples = False|' $(AIRFLOW_HOME)/airflow.cfg

run: setup airflow-db
	@echo "run: 1/5 simulating the operator's files"
	$(BIN)/cpc simulate
	@echo "run: 2/5 loading the history before $(RUN_DATE) (ingest + conform of earlier deliveries)"
	$(BIN)/cpc history --before $(RUN_DATE)
	$(BIN)/airflow dags reserialize > $(AIRFLOW_HOME)/reserialize.log 2>&1 || (cat $(AIRFLOW_HOME)/reserialize.log; exit 1)
	@echo "run: 3/5 training the propensity models as of $(TRAIN_DATE) with Airflow (airflow dags test cpc_training)"
	$(BIN)/airflow dags test cpc_training $(TRAIN_DATE) 2>&1 | tee $(AIRFLOW_HOME)/training-test.log | grep -E --line-buffered "^(train|tags)[ :]|DagRun Finished|Traceback|Error:" | sed -u -e 's/\(.\{200\}\).*/\1 .../' ; test $${PIPESTATUS[0]} -eq 0
	@echo "run: 4/5 nightly DAG for $(RUN_DATE) with Airflow (airflow dags test cpc_nightly)"
	$(BIN)/airflow dags test cpc_nightly $(RUN_DATE) 2>&1 | tee $(AIRFLOW_HOME)/dags-test.log | grep -E --line-buffered "^(ingest|conform|tags|tag stats|tag drift|segments|propensity|score|export|evaluate) |DagRun Finished|Traceback|Error:" | sed -u -e 's/\(.\{200\}\).*/\1 .../' ; test $${PIPESTATUS[0]} -eq 0
	@echo "run: 5/5 summary"
	$(BIN)/cpc summary --date $(RUN_DATE)

# An Airflow 3 backfill of the nightly DAG run by Airflow's scheduler (started for the time of the backfill).
airflow-backfill: setup airflow-db
	@test -n "$(START)" -a -n "$(END)" || (echo "usage: make airflow-backfill START=YYYY-MM-DD END=YYYY-MM-DD [RUNS=1]"; exit 1)
	$(BIN)/python -m jobs.airflow_backfill --start $(START) --end $(END) --max-active-runs $(or $(RUNS),1)

test: setup
	$(BIN)/python -m pytest -q; status=$$?; if [ $$status -eq 5 ]; then echo "pytest ran no test: failing"; exit 1; fi; exit $$status

CUSTOMERS ?= 100000
DAYS ?= 90
bench: setup
	$(BIN)/python bench/nightly_bench.py --customers $(CUSTOMERS) --days $(DAYS) $(if $(PER_TAG),--per-tag-sample $(PER_TAG))

LOOP_CUSTOMERS ?= 20000
LOOP_DAYS ?= 8
LOOP_HISTORY ?= 75
loop: setup
	$(BIN)/cpc loop --customers $(LOOP_CUSTOMERS) --days $(LOOP_DAYS) --history-days $(LOOP_HISTORY)

cluster-run: setup
	$(BIN)/python bench/cluster_check.py --customers $(or $(CLUSTER_CUSTOMERS),2000) --days $(or $(CLUSTER_DAYS),35)

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf var
