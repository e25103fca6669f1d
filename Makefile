# The two commands of the README. Both install what is missing first (scripts/deps).
PRESET ?= default
BUILD_DIR := build/$(PRESET)
JOBS ?= $(shell nproc)

.PHONY: run test build deps services bench clean

run: build
	$(BUILD_DIR)/bin/synthorg serve

test: build services
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) $(CTEST_ARGS)

build: deps
	cmake --preset $(PRESET)
	cmake --build --preset $(PRESET) -j $(JOBS)

deps:
	scripts/deps

services:
	scripts/services

bench: build
	scripts/deps --bench
	bench/run-all $(BUILD_DIR)

clean:
	rm -rf build
