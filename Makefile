# sekisho — the two commands a fresh Debian machine needs are `make run` and
# `make test`; everything they need is installed here.

GO       ?= go
# The release, kept in one place: the VERSION file (the binary embeds it).
VERSION  := $(shell cat VERSION)
# The commit, stamped into the binary for `sekisho version`.
COMMIT   ?= $(shell git describe --always --dirty --abbrev=12 --match=NONE 2>/dev/null)
LDFLAGS  := -X main.commit=$(COMMIT)
# More `go build` flags and linker flags (make deb sets them).
BUILDFLAGS ?=
EXTLDFLAGS ?=
BIN      := bin/sekisho
# The Go release go.mod asks for (its go line), and the one found: a target
# that builds stops at once, with one line, when it is older (README, "Go").
# GOTOOLCHAIN=local and outside the module: the Go found, not one it would
# fetch to build this module.
GO_MIN   := $(shell sed -n 's/^go //p' go.mod)
GO_FOUND := $(firstword $(shell cd / && GOTOOLCHAIN=local $(GO) env GOVERSION 2>/dev/null))
GO_OLD   := $(shell v='$(patsubst go%,%,$(GO_FOUND))'; [ -n "$$v" ] && \
              [ "$$(printf '%s\n%s\n' '$(GO_MIN)' "$$v" | sort -V | head -n 1)" = '$(GO_MIN)' ] || echo old)
ifneq ($(GO_OLD),)
ifneq ($(filter all build run test lint install deb bench-go,$(or $(MAKECMDGOALS),all)),)
$(error sekisho needs Go $(GO_MIN) or newer (go.mod); $(GO) is $(or $(GO_FOUND),missing or not Go))
endif
endif
# Debian packages the tests need: the servers and clients they drive for
# real, a C toolchain for -race (cgo), Net::SSLeay for swaks' STARTTLS (only
# a Recommends of swaks, so --no-install-recommends leaves it out), for the
# package's test lintian, man-db (man, lexgrog) and binutils (strip), and
# python3-dkim (dkimsign signs the DKIM tests' messages independently of
# go-msgauth).
TEST_PACKAGES := slapd ldap-utils redis-server swaks libnet-ssleay-perl gcc libc6-dev python3 e2fsprogs util-linux mount lintian man-db binutils msmtp curl python3-dkim
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# nfpm builds the .deb; `go run` fetches it through the Go module proxy.
NFPM          := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DEB           := bin/sekisho_$(VERSION)_amd64.deb
# The package's Maintainer field; a campus building its own sets its own.
MAINTAINER    ?= sekisho maintainers <postmaster@campus.example>

# make install: the same files the .deb installs, under DESTDIR and PREFIX
# (docs/packaging.md). The configuration goes to SYSCONFDIR/sekisho, where
# the units look for it.
PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= /etc
INSTALL    ?= install
sbindir    := $(PREFIX)/sbin
libdir     := $(PREFIX)/lib
docdir     := $(PREFIX)/share/doc/sekisho
mandir     := $(PREFIX)/share/man
confdir    := $(SYSCONFDIR)/sekisho
UNITS      := deploy/sekisho.service deploy/sekisho.socket deploy/sekisho-http.socket deploy/sekisho-report.service deploy/sekisho-report.timer
CONFFILES  := packaging/sekisho.yaml baddomains.txt deploy/greylist-whitelist.txt
DOCS       := README.md CHANGELOG.md LICENSE docs/*.md docs/*.png deploy/INTEGRATION.md
EXAMPLES   := deploy/*.yaml deploy/greylist-whitelist.txt
# The paths the shipped files name, as installed here.
SUBST      := sed -e 's|/usr/sbin/sekisho|$(sbindir)/sekisho|g' -e 's|/usr/share/doc/sekisho|$(docdir)|g' \
              -e 's|@DOCDIR@|$(docdir)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|/etc/sekisho|$(confdir)|g'

.PHONY: all build run test test-deps lint install deb bench bench-profile bench-go fuzz clean

all: build

build:
	$(GO) build $(BUILDFLAGS) -ldflags "$(LDFLAGS) $(EXTLDFLAGS)" -o $(BIN) ./cmd/sekisho

# The gateway on its embedded defaults: 127.0.0.1:2525, mail for localhost
# into ./var/mail.
run: build
	./$(BIN) serve

# Installs what the tests need (as root, with apt-get), builds the binary
# and the Debian package (which e2e/deb_test.go installs and purges), checks
# the code (gofmt, go vet, staticcheck), then runs the whole suite with the
# race detector. Under CI=true a missing component fails.
test: test-deps build deb lint
	$(GO) test -race -count=1 -timeout 20m ./...

# Each package is checked by running what the tests use from it, not with
# dpkg -s (which calls a removed but not purged package installed). Postfix
# (smtp-source, smtp-sink, and the private instance e2e/history_test.go
# relays to) is installed by bench/install-postfix.sh, which keeps it from
# becoming the machine's mail system.
test-deps:
	@bench/install-postfix.sh
	@have() { \
	  case $$1 in \
	  slapd)              command -v slapd && test -x "$$(dirname "$$(command -v slapd)")/slapadd" && slapd -VV ;; \
	  ldap-utils)         ldapsearch -VV && ldapadd -VV ;; \
	  redis-server)       redis-server --version ;; \
	  swaks)              swaks --version ;; \
	  libnet-ssleay-perl) perl -MNet::SSLeay -e1 ;; \
	  gcc)                gcc --version ;; \
	  python3)            python3 -c 'import smtplib, ssl' ;; \
	  e2fsprogs)          mkfs.ext4 -V ;; \
	  util-linux)         fsfreeze --version ;; \
	  mount)              mount --version && umount --version ;; \
	  lintian)            lintian --version ;; \
	  man-db)             man --version && lexgrog --version ;; \
	  binutils)           strip --version ;; \
	  msmtp)              msmtp --version ;; \
	  curl)               curl --version ;; \
	  python3-dkim)       k=$$(mktemp) && head -c 32 /dev/urandom | base64 >$$k && \
	                      printf 'From: a@b.example\r\n\r\nx\r\n' | dkimsign --signalg ed25519-sha256 s b.example $$k | grep -q '^DKIM-Signature:'; \
	                      st=$$?; rm -f $$k; test $$st = 0 ;; \
	  libc6-dev)          printf '#include <stdio.h>\nint main(void) { return puts(""); }\n' | gcc -x c -o /dev/null - ;; \
	  *)                  echo "test-deps: no check for $$1" >&3; false ;; \
	  esac 3>&2 >/dev/null 2>&1; }; \
	export PATH="$$PATH:/usr/sbin:/sbin"; \
	missing=""; \
	for p in $(TEST_PACKAGES); do have $$p || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "make test needs root to apt-get install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  still=""; \
	  for p in $$missing; do have $$p || still="$$still $$p"; done; \
	  if [ -n "$$still" ]; then echo "installed but still not working:$$still" >&2; exit 1; fi; \
	fi
	@# The packaged daemons are not needed as services: the tests start their own.
	@-systemctl disable --now slapd redis-server >/dev/null 2>&1 || true
	@-service slapd stop >/dev/null 2>&1; service redis-server stop >/dev/null 2>&1; true

# The files of the package, under DESTDIR/PREFIX (default /usr/local). A
# configuration file already there is kept (it is the admin's); the new one
# is put beside it as FILE.new when it differs.
install: build
	$(INSTALL) -d $(DESTDIR)$(sbindir) $(DESTDIR)$(libdir)/systemd/system $(DESTDIR)$(libdir)/sysusers.d \
	  $(DESTDIR)$(libdir)/tmpfiles.d $(DESTDIR)$(confdir) $(DESTDIR)$(docdir)/examples \
	  $(DESTDIR)$(mandir)/man8 $(DESTDIR)$(mandir)/man5
	$(INSTALL) -m 0755 $(BIN) $(DESTDIR)$(sbindir)/sekisho
	@set -e; for u in $(UNITS); do \
	  $(SUBST) $$u > $(DESTDIR)$(libdir)/systemd/system/$${u##*/}; chmod 0644 $(DESTDIR)$(libdir)/systemd/system/$${u##*/}; \
	done
	$(INSTALL) -m 0644 packaging/sysusers.conf $(DESTDIR)$(libdir)/sysusers.d/sekisho.conf
	$(INSTALL) -m 0644 packaging/tmpfiles.conf $(DESTDIR)$(libdir)/tmpfiles.d/sekisho.conf
	@set -e; for f in $(CONFFILES); do \
	  dst=$(DESTDIR)$(confdir)/$${f##*/}; $(SUBST) $$f > $$dst.tmp; chmod 0644 $$dst.tmp; \
	  if [ ! -e $$dst ]; then mv $$dst.tmp $$dst; \
	  elif cmp -s $$dst.tmp $$dst; then rm $$dst.tmp; \
	  else mv $$dst.tmp $$dst.new; echo "kept $$dst (yours); the shipped one is $$dst.new"; fi; \
	done
	@set -e; for m in docs/man/sekisho.8:man8 docs/man/sekisho.yaml.5:man5; do \
	  src=$${m%%:*}; $(SUBST) $$src | gzip -9n > $(DESTDIR)$(mandir)/$${m##*:}/$${src##*/}.gz; \
	  chmod 0644 $(DESTDIR)$(mandir)/$${m##*:}/$${src##*/}.gz; \
	done
	$(INSTALL) -m 0644 $(DOCS) $(DESTDIR)$(docdir)/
	$(INSTALL) -m 0644 $(EXAMPLES) $(DESTDIR)$(docdir)/examples/

# bin/sekisho_VERSION_amd64.deb: the files of `make install` with PREFIX=/usr,
# packaged by nfpm with the maintainer scripts and the conffiles of
# packaging/ (docs/packaging.md). Its binary is built on its own, as
# Debian's hardening flags ask (position-independent, relocations read-only
# once loaded), and stripped; it links the C library (cgo), so the package
# depends on the libc6 that has every symbol version it uses.
DEB_BUILD := BIN=bin/deb/sekisho BUILDFLAGS=-buildmode=pie EXTLDFLAGS="-linkmode=external -extldflags=-Wl,-z,relro,-z,now"
deb:
	rm -rf bin/deb-root $(DEB)
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/bin/deb-root PREFIX=/usr $(DEB_BUILD) >/dev/null
	strip --remove-section=.comment --remove-section=.note bin/deb-root/usr/sbin/sekisho
	@# Debian's places for the license and the changelog of a native package.
	rm bin/deb-root/usr/share/doc/sekisho/LICENSE bin/deb-root/usr/share/doc/sekisho/CHANGELOG.md
	awk -v maint="$(MAINTAINER)" -f packaging/debian-changelog.awk CHANGELOG.md | gzip -9n > bin/deb-root/usr/share/doc/sekisho/changelog.gz
	$(INSTALL) -m 0644 packaging/copyright bin/deb-root/usr/share/doc/sekisho/copyright
	$(INSTALL) -d bin/deb-root/usr/share/lintian/overrides
	$(INSTALL) -m 0644 packaging/lintian-overrides bin/deb-root/usr/share/lintian/overrides/sekisho
	libc=$$(objdump -T bin/deb-root/usr/sbin/sekisho | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1); \
	VERSION=$(VERSION) MAINTAINER="$(MAINTAINER)" LIBC_MIN=$$libc $(GO) run $(NFPM) package -f packaging/nfpm.yaml -p deb -t $(DEB)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags bench,benchprofile ./bench/ ./cmd/sekisho/
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags bench,benchprofile ./bench/ ./cmd/sekisho/

# The speed as users would measure it (docs/performance.md): Postfix's
# smtp-source through sekisho with every check on to smtp-sink, against
# smtp-source straight to smtp-sink; then 10,000 clients in the greet pause.
# Installs postfix (not configured) and the test servers, as root.
bench:
	bench/bench.sh

# The same with a profiling build: CPU, allocation and heap profiles in
# bin/bench-profiles/.
bench-profile:
	bench/bench.sh -profile

# The Go benchmarks of the packages (go test -bench).
bench-go: build
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
