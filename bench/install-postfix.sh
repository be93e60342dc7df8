#!/bin/sh
# Installs Debian's postfix package for its test tools smtp-source and
# smtp-sink (in /usr/sbin) and for the private Postfix instance the e2e
# tests relay to (`make test-deps` calls it), without letting it become
# the machine's mail system: debconf is told "No configuration" (no
# main.cf is written, so postfix cannot start), and while apt-get runs a
# policy-rc.d forbids starting any service. Afterwards nothing may listen on port 25.
# Needs root. Does nothing when the tools already run.
set -eu
PATH="$PATH:/usr/sbin:/sbin"
# The tools are run, not only looked for: smtp-source and smtp-sink print
# their usage, postconf its built-in settings, among them the daemon
# directory, whose master and smtpd e2e/history_test.go starts as a private
# instance (internal/harness/postfix.go; they cannot run here without a
# configuration) under the postfix user.
have() {
	smtp-source 2>&1 | grep -q 'usage: smtp-source' &&
		smtp-sink 2>&1 | grep -q 'usage: smtp-sink' &&
		d=$(postconf -dh daemon_directory 2>/dev/null) &&
		test -x "$d/master" && test -x "$d/smtpd" && command -v postfix >/dev/null &&
		id postfix >/dev/null 2>&1
}
if have; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
	echo "install-postfix: smtp-source, smtp-sink or postfix are missing; installing postfix needs root" >&2
	exit 1
fi
echo "bench: installing postfix (for smtp-source and smtp-sink only, not configured)" >&2
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\n# bench/install-postfix.sh: no service starts while postfix is installed\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	created_policy=yes
fi
status=0
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null; } || status=$?
if [ -n "$created_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
[ "$status" = 0 ] || exit "$status"
# The package's own daemon is never wanted here.
systemctl disable --now postfix >/dev/null 2>&1 || true
if command -v ss >/dev/null 2>&1 && ss -ltnH 'sport = :25' | grep -q .; then
	echo "bench: something listens on port 25 after installing postfix:" >&2
	ss -ltnp 'sport = :25' >&2
	exit 1
fi
have || { echo "bench: postfix installed but smtp-source, smtp-sink or postfix's master and smtpd still do not run" >&2; exit 1; }
