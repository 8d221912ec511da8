# agent-sandbox developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
BIN := $(VENV)/bin
PY ?= python3
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help venv lint docs unit sanity collection psl release-check docker images molecule test demo demo-clean fresh sandbox clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/.stamp: requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

.collections/ansible_collections/agent_sandbox/native:
	mkdir -p .collections/ansible_collections/agent_sandbox
	ln -sfn ../../.. $@

venv: $(BIN)/.stamp .collections/ansible_collections/agent_sandbox/native ## Create the pinned toolchain in .venv

lint: venv ## yamllint, ansible-lint (production profile), docs drift and antsibull-docs lint
	yamllint --strict .
	ansible-lint
	python tests/docs/gen_docs.py --check
	ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/.collections antsibull-docs lint-collection-docs --plugin-docs \
	  .collections/ansible_collections/agent_sandbox/native

docs: venv ## Regenerate docs/reference from argument specs and module docs
	python tests/docs/gen_docs.py

unit: venv ## pytest: modules, module_utils, the proxy addon
	pytest -q tests/unit

sanity: venv ## ansible-test sanity on a collection-layout copy
	tests/sanity.sh

collection: venv ## Build the tarball, install it, use it (ansible-doc, syntax-check)
	tests/collection.sh

psl: venv ## Copy the Public Suffix List of the pinned publicsuffixlist package into roles/mitm_proxy/files/ (gzipped)
	gzip -n -9 -c "$$(python -c 'import pathlib, publicsuffixlist as p; print(pathlib.Path(p.__file__).parent / "public_suffix_list.dat")')" \
	  >roles/mitm_proxy/files/public_suffix_list.dat.gz
	zcat roles/mitm_proxy/files/public_suffix_list.dat.gz | sed -n 's|^// VERSION: |psl: Public Suffix List |p'

release-check: ## Fail if code changed since the last tag without a version bump
	tests/release-check.sh

docker: ## Make sure a Docker engine answers (installs docker.io on Debian as root)
	tests/ensure-docker.sh

images: docker ## Build the Molecule base images (cached by a hash of their inputs)
	tests/images/build.sh

# The longest first, so that the last lane does not start a long one alone.
MOLECULE_ORDER := lifecycle default fleet host_firewall nix_tools sandbox_user mitm_proxy wsl shared_workspace harness
molecule: venv images ## Run every Molecule scenario, MOLECULE_JOBS at a time (default 2)
	tests/molecule.sh $(filter $(SCENARIOS),$(MOLECULE_ORDER)) $(filter-out $(MOLECULE_ORDER),$(SCENARIOS))

test: ## Everything CI runs: lint, unit, sanity, collection, images, molecule
	@for t in venv lint unit sanity collection release-check images molecule; do \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$t || { echo "make test: $$t failed"; exit 1; }; \
	  echo "== make $$t took $$(( $$(date +%s) - start )) s"; \
	done

demo: venv images ## The whole sandbox in a disposable container, ending in its self-test report
	tests/demo/run.sh

demo-clean: ## Remove the demo container
	docker rm -f $${AGENT_SANDBOX_DEMO_NAME:-agent-sandbox-demo} >/dev/null 2>&1 || true

fresh: ## As a newcomer: remove the demo container and the test images, then make demo from scratch
	docker rm -f $${AGENT_SANDBOX_DEMO_NAME:-agent-sandbox-demo} >/dev/null 2>&1 || true
	docker rmi -f agent-sandbox-molecule:bookworm agent-sandbox-molecule:trixie >/dev/null 2>&1 || true
	$(MAKE) --no-print-directory demo

sandbox: venv ## Apply site.yml to this workstation for real (asks for your sudo password)
	ansible-playbook -i inventories/localhost -K site.yml

clean: ## Remove the venv and collection link
	rm -rf $(VENV) .collections
