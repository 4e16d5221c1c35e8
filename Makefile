# Two commands do all set-up on a fresh machine:
#   make demo   create .venv, install vinocr, run the demo job on synthetic data
#   make test   create .venv, install vinocr, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vinocr-installed
DEMO_DIR ?= demo_out
# Two loader/test workers match the 2-core machines this is developed on.
TEST_WORKERS ?= 2

.PHONY: install test demo clean lock

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.py constraints.txt
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[cpu,test]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests

demo: install
	$(VENV)/bin/vinocr-synth vin --n 600 --seed 0 --out $(DEMO_DIR)/vin_synth --workers 2
	$(VENV)/bin/vinocr-data validate $(DEMO_DIR)/vin_synth --charset vin
	$(VENV)/bin/vinocr-data stats $(DEMO_DIR)/vin_synth --charset vin
	$(VENV)/bin/vinocr-data split $(DEMO_DIR)/vin_synth --out $(DEMO_DIR)/vin_splits --seed 0
	$(VENV)/bin/vinocr-data make-lmdb $(DEMO_DIR)/vin_splits/train.txt --out $(DEMO_DIR)/vin_train_lmdb --overwrite
	$(VENV)/bin/vinocr-data preview-aug $(DEMO_DIR)/vin_splits/train.txt --preset vin --out $(DEMO_DIR)/aug_preview_vin.png
	$(VENV)/bin/vinocr-synth plates --tracks 20 --seed 0 --out $(DEMO_DIR)/plates
	$(VENV)/bin/vinocr-data stats $(DEMO_DIR)/plates --charset plate --frames both
	$(VENV)/bin/vinocr-config -c configs/vin/ppocrv4_mobile.yml -o Global.run_dir=$(DEMO_DIR)/run --write
	@echo "demo outputs in $(DEMO_DIR)/"

# Re-pin the tested dependency set after changing setup.py.
lock: $(PY)
	$(PY) -m pip freeze --exclude-editable | grep -v "^-e " > constraints.txt

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info
