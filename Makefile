# joint_perception — set-up, demo and tests on a development machine or CI.
# `make demo` and `make test` create .venv (ROS 2 Kilted wheels included) on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_OUT ?= out/demo
# ONNX Runtime telemetry resolves a Microsoft host through DNS: off for every command run here
# (the package sets it too, before onnxruntime is imported; docs/contracts.md section 6).
export ORT_DISABLE_TELEMETRY := 1

.PHONY: venv demo test lint benchmark clean

venv: $(STAMP)

# torch is installed first and pinned: the CPU build on these machines, not the CUDA wheels.
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m joint_perception.demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

benchmark: $(STAMP)
	$(PY) -m joint_perception.evaluation.benchmark

clean:
	rm -rf $(VENV) out build install log *.egg-info
