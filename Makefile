# vitdense: `make demo` and `make test` set everything up in $(VENV) first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vitdense-ready
CSRC := $(shell find vitdense/ops/csrc -type f 2>/dev/null)
DEMO_CONFIG ?= configs/relation_detr/relation-detr_swin-nano_1xb8-shapes.py
DEMO_DIR ?= work_dirs/demo
PYTEST_ARGS ?=
# pytest-xdist workers (one per core); a test file stays on one worker
TEST_WORKERS ?= auto

.PHONY: setup data demo test clean

setup: $(STAMP)

$(STAMP): tools/install.sh setup.py $(wildcard requirements/*.txt) $(CSRC)
	VENV=$(VENV) bash tools/install.sh
	touch $@

data: setup
	$(PY) tools/dataset_converters/make_synthetic.py coco data/coco_shapes
	$(PY) tools/dataset_converters/make_synthetic.py imagenet data/imagenet_shapes

# A finished demo run is kept: remove $(DEMO_DIR) to train again.
demo: data
	test -f $(DEMO_DIR)/last_checkpoint || \
		$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_DIR)
	$(PY) tools/test.py $(DEMO_CONFIG) "$$(cat $(DEMO_DIR)/last_checkpoint)" \
		--work-dir $(DEMO_DIR) --show-dir $(abspath $(DEMO_DIR))/predictions
	@echo "Prediction pictures: $(DEMO_DIR)/predictions"

test: setup
	@$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

clean:
	rm -rf work_dirs build *.egg-info
