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

.PHONY: install test demo soak clean lock

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.py constraints.txt
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[cpu,test]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS) tests

# The main job end to end on synthetic data (3 to 7 minutes on 2 CPU cores, docs/performance.md): synthesise
# VINs from the training style pool and a test set in held-out styles (fonts, materials and camera damage the
# training data never shows), validate and split the training crops, import the pretrained PP-OCRv6 small
# recogniser (the default VIN base), fine-tune it with the technique the dataset size calls for, compare
# zero-shot and fine-tuned on the test split and on the held-out styles, and export an inference model that
# stock paddleocr loads.
demo: install
	$(VENV)/bin/vinocr-synth vin --n 800 --seed 0 --pool train --out $(DEMO_DIR)/vin_synth --workers 2 --overwrite
	$(VENV)/bin/vinocr-synth vin --n 300 --seed 7000 --pool heldout --out $(DEMO_DIR)/vin_heldout_styles --workers 2 --overwrite
	$(VENV)/bin/vinocr-data validate $(DEMO_DIR)/vin_synth --charset vin --max-report 5
	$(VENV)/bin/vinocr-data split $(DEMO_DIR)/vin_synth --out $(DEMO_DIR)/vin_splits --fractions 0.7 0.1 0.2 --seed 0 --overwrite
	$(VENV)/bin/vinocr-pretrained import --model ppocrv6_small
	$(VENV)/bin/vinocr-finetune -c configs/vin/ppocrv6_small.yml --overwrite \
		-o Global.run_dir=$(DEMO_DIR)/run Train.epochs=3 Train.batch_size=16 Train.feature_cache.views=1 \
		"Train.dataset={type: label_file, label_files: [$(DEMO_DIR)/vin_splits/train.txt]}" \
		"Eval.dataset={type: label_file, label_files: [$(DEMO_DIR)/vin_splits/val.txt]}"
	$(VENV)/bin/vinocr-eval -c configs/vin/ppocrv6_small.yml --models pretrained $(DEMO_DIR)/run \
		--data $(DEMO_DIR)/vin_splits/test.txt $(DEMO_DIR)/vin_heldout_styles/labels.txt --out $(DEMO_DIR)/eval
	$(VENV)/bin/vinocr-export --checkpoint $(DEMO_DIR)/run --out $(DEMO_DIR)/exported --overwrite
	@echo "demo done: run in $(DEMO_DIR)/run (report.json, visualdl/), comparison in $(DEMO_DIR)/eval/table.md, model in $(DEMO_DIR)/exported"

# The situations tiny tests cannot show, at the size users run (about an hour on 2 cores; not part
# of `make test`): 2-process fine-tune on 4000/400 crops across an epoch boundary, Ctrl-C during
# validation, kill -9 of a rank, a full disk while checkpointing, the same faults in SR training.
SOAK_DIR ?= soak_out
soak: install
	$(PY) tools/soak.py --work $(SOAK_DIR)

# Re-pin the tested dependency set after changing setup.py.
lock: $(PY)
	$(PY) -m pip freeze --exclude-editable | grep -v "^-e " > constraints.txt

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info
