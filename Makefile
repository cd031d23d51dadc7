# lab4: conditional-VAE video prediction workbook.  `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# A matched torch/torchvision pair from the registry (runs on CPU and CUDA). Pinned on purpose:
# never a torch version that a local CPU-only wheel satisfies (torchvision will not import with it).
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.2
DEMO_DATA ?= data/synth-demo
DEMO_RUN ?= runs/demo
MINI_DATA ?= data/synth-mini
# pytest-xdist: one worker per core (tests run one thread each); a file's tests stay on one worker, in
# order (a notebook's cells under nbval, a module's fixtures). PARALLEL= runs them in one process.
PARALLEL ?= -n auto --dist loadfile

.DEFAULT_GOAL := help
.PHONY: help setup demo figures test lab data-mini data-demo bench bench-quality clean strip tensorboard book test-fast

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(VENV)/.installed ## create .venv: torch+torchvision pair, lab4 (editable), test and notebook tools

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PAIR)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -c "import torch, torchvision, lab4; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
	touch $@

data-mini: setup ## generate the mini synthetic dataset (tests, notebooks' smoke mode)
	@grep -qs '"complete": true' $(MINI_DATA)/synth.json || $(BIN)/lab4-synth --out $(MINI_DATA) --preset mini

data-demo: setup ## generate the demo synthetic dataset
	@grep -qs '"complete": true' $(DEMO_DATA)/synth.json || $(BIN)/lab4-synth --out $(DEMO_DATA) --preset demo

demo: data-demo ## synthetic data -> CPU training -> val GIF/PSNR, submission.csv, score vs baseline
	$(BIN)/lab4-train --DR $(DEMO_DATA) --save_root $(DEMO_RUN) --preset demo --overwrite
	$(BIN)/lab4-test --DR $(DEMO_DATA) --save_root $(DEMO_RUN) --ckpt_path $(DEMO_RUN)/last.ckpt --val
	$(BIN)/lab4-score --solution $(DEMO_DATA)/test_solution.npy --submission $(DEMO_RUN)/submission.csv --baseline
	@echo "outputs in $(DEMO_RUN): val/pred_val.gif val/psnr_per_frame.png loss_curves.png metrics.csv submission.csv pred_seq*.gif"

FIGURE_NOTEBOOKS := 02_kl_annealing 03_teacher_forcing 04_psnr_per_frame 06_training_strategies
figures: data-demo ## re-run notebooks 02-04 and 06 at their default size, saving the README figures in reports/figures
	mkdir -p runs/workbook/executed
	for nb in $(FIGURE_NOTEBOOKS); do \
	  env -u LAB4_SMOKE MPLBACKEND=Agg $(BIN)/papermill --cwd notebooks -p FIGURES_DIR ../reports/figures \
	    notebooks/$$nb.ipynb runs/workbook/executed/$$nb.ipynb || exit 1; done

EXECUTED ?= runs/workbook/executed
BOOK_DIR ?= reports/book
book: setup ## one HTML site of the notebooks executed by `make figures`, the docs, README and RESULTS -> reports/book/
	$(PY) -m lab4.book --executed $(EXECUTED) --out $(BOOK_DIR)

test: data-mini ## unit tests + every notebook under nbval, in smoke mode (LAB4_SMOKE=1)
	LAB4_SMOKE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 $(PY) -m pytest tests notebooks --nbval-lax -q $(PARALLEL) --durations=15

test-fast: setup ## the unit tests without the slow end-to-end ones (training runs, notebooks, subprocesses)
	LAB4_SMOKE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 $(PY) -m pytest tests -q -m "not slow" $(PARALLEL)

lab: setup ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup ## run the speed benchmarks and rewrite benchmarks/RESULTS.md
	$(PY) benchmarks/run_all.py

bench-quality: setup ## learning curves at full dims on held-out synthetic data (~50-70 min on 2 cores): RESULTS.md section 6, reports/figures
	$(PY) benchmarks/run_all.py --only quality

tensorboard: setup ## open TensorBoard on runs/ (train with --tensorboard to write events)
	$(BIN)/tensorboard --logdir runs $(if $(TB_PORT),--port $(TB_PORT))

strip: setup ## strip outputs from the notebooks (they are committed without)
	$(BIN)/nbstripout notebooks/*.ipynb

clean: ## remove runs, generated data and caches (keeps .venv)
	rm -rf runs data/synth-* .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
