# Packaging: the systemd unit, the man pages, their checks, and the container test.
#
#   make install       also installs the unit in $(PREFIX)/lib/systemd/system (ExecStart names
#                      $(PREFIX)/bin/tensord) and docs/man/*.N in $(PREFIX)/share/man/manN
#   make test-ops      tests/python/test_packaging.py (part of make test): the installed unit
#                      passes systemd-analyze verify, the man page documents every flag of
#                      tensord --help and renders without warnings, make install places everything
#   make docker-test   not part of make test: builds docker/Dockerfile (its build stage runs
#                      make test) and tests a container with the Python client, then the
#                      three-node docker/compose.yaml on the same image (tests/ops/compose_test.sh,
#                      podman-compose); with podman, the base images are made from the Debian
#                      mirror (docker/base-image.sh).
#                      ENGINE=docker|podman, TESTS=test|test-c|none for the build stage.

UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR  ?= $(PREFIX)/share/man
MAN_PAGES := $(wildcard docs/man/*.[1-8])

# systemd-analyze verify (which also runs `man tensord(8)` for Documentation= and needs the
# ExecReload command, procps's kill), groff (the man page rendered with warnings as errors),
# mandoc (-Tlint).
DEB_PKGS += systemd procps man-db groff-base mandoc
# The deployment files (deploy/kubernetes, docker/compose.yaml): PyYAML reads them in
# tests/python/test_deploy.py; podman-compose runs the three-node compose file (make
# docker-test). The image's build stage leaves podman-compose out (docker/deps.sh).
DEB_PKGS += python3-yaml podman-compose

.PHONY: install-packaging test-ops docker-test

install: install-packaging

install-packaging:
	install -d $(DESTDIR)$(UNITDIR)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' packaging/tensord.service.in \
	    > $(DESTDIR)$(UNITDIR)/tensord.service
	chmod 644 $(DESTDIR)$(UNITDIR)/tensord.service
	$(Q)for f in $(MAN_PAGES); do \
	    d=$(DESTDIR)$(MANDIR)/man$${f##*.}; \
	    echo "install -m 644 $$f $$d"; install -d $$d && install -m 644 $$f $$d || exit 1; \
	done

test-ops: all
	$(Q)TENSORD_BIN=$(abspath $(TENSORD)) PYTHONPATH=$(abspath client/python) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/python/test_packaging.py

# The client side needs the generated protobuf module (and PyYAML for the compose test); the
# engine side needs podman (with runc and debootstrap for the base images, podman-compose for
# docker/compose.yaml) unless a Docker engine answers.
DOCKER_TEST_PKGS := protobuf-compiler python3-protobuf python3-numpy python3-yaml
docker-test:
	$(Q)pkgs="$(DOCKER_TEST_PKGS)"; \
	if [ "$(ENGINE)" != docker ] && ! docker info >/dev/null 2>&1; then \
	    pkgs="$$pkgs podman runc debootstrap podman-compose"; \
	fi; \
	$(MAKE) --no-print-directory deps DEB_PKGS="$$pkgs"
	$(Q)$(MAKE) --no-print-directory $(PY_GEN)
	$(Q)PYTHON=$(PYTHON) tests/ops/docker_test.sh
