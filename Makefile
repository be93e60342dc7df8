# sekisho — the two commands a fresh Debian machine needs are `make run` and
# `make test`; everything they need is installed here.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/sekisho
# Debian packages the tests need: the servers and clients they drive for
# real, a C toolchain for -race (cgo), and Net::SSLeay for swaks' STARTTLS (only
# a Recommends of swaks, so --no-install-recommends leaves it out).
TEST_PACKAGES := slapd ldap-utils redis-server swaks libnet-ssleay-perl gcc libc6-dev python3 e2fsprogs util-linux mount msmtp curl python3-dkim
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build run test test-deps lint bench bench-profile bench-go fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/sekisho

# The gateway on its embedded defaults: 127.0.0.1:2525, mail for localhost
# into ./var/mail.
run: build
	./$(BIN) serve

# Installs what the tests need (as root, with apt-get), checks the code
# (gofmt, go vet, staticcheck), then runs the whole suite with the race
# detector. Under CI=true a missing component fails.
test: test-deps build lint
	$(GO) test -race -count=1 -timeout 20m ./...

# Each package is checked by running what the tests use from it, not with
# dpkg -s (which calls a removed but not purged package installed).
test-deps:
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
