#!/bin/sh
# Installs Debian's postfix package for its test tools smtp-source and
# smtp-sink (in /usr/sbin), without letting it become the machine's mail
# system: debconf is told "No configuration" (no main.cf is written, so
# postfix cannot start), and while apt-get runs a policy-rc.d forbids
# starting any service. Afterwards nothing may listen on port 25.
# Needs root. Does nothing when both tools already run.
set -eu
PATH="$PATH:/usr/sbin:/sbin"
have() { command -v smtp-source >/dev/null 2>&1 && command -v smtp-sink >/dev/null 2>&1; }
if have; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
	echo "bench: smtp-source and smtp-sink are missing; installing postfix needs root" >&2
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
have || { echo "bench: postfix installed but smtp-source/smtp-sink still missing" >&2; exit 1; }
