# The two commands of the README. Both install what is missing first (scripts/deps).
PRESET ?= default
BUILD_DIR := build/$(PRESET)
JOBS ?= $(shell nproc)

.PHONY: run test build deps services bench clean image deb config-reference api-reference

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

# The container image (packaging/docker/build-image): FROM scratch, built from this build tree.
image: build
	scripts/services docker
	packaging/docker/build-image --build-dir $(BUILD_DIR)

# The .deb (CPack), into $(BUILD_DIR)/packages.
deb: build
	cd $(BUILD_DIR) && cpack --config CPackConfig.cmake

# docs/config-reference.md from the config maps (the test config.reference_up_to_date checks it).
config-reference: build
	cd / && env -u SYNTHORG_CONFIG_PATH $(CURDIR)/$(BUILD_DIR)/bin/synthorg config docs > $(CURDIR)/docs/config-reference.md

bench: build
	scripts/deps --bench
	bench/run-all $(BUILD_DIR)

clean:
	rm -rf build

# docs/api-reference.md from the OpenAPI document a running kernel serves (docs.api_reference_up_to_date checks it).
api-reference: build
	python3 scripts/api-reference $(BUILD_DIR) > docs/api-reference.md
