#!/bin/sh
# Makes the example screenshots of docs/report.md: docs/report-chart.png (the
# SVG chart) and docs/report-page.png (the /report page), from the scripted
# weeks of scripts/reportdemo, and of docs/history.md: docs/history-page.png
# (the /history page, hostile addresses included), from the scripted
# sessions of scripts/historydemo, in headless Chromium. A documentation
# artifact, not a test: `make test` needs no browser.
#
#   apt-get install -y --no-install-recommends chromium fonts-dejavu-core
#   sh scripts/screenshots.sh
#
# pngquant (apt-get install pngquant), when present, reduces the PNGs to a
# palette: they must stay under 200 KB.
set -eu
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "screenshots: chromium is not installed (apt-get install chromium fonts-dejavu-core)" >&2; exit 1; }

out=$(mktemp -d)
profile=$(mktemp -d)
trap 'rm -rf "$out" "$profile"' EXIT

go run ./scripts/reportdemo -out "$out"
go run ./scripts/historydemo -out "$out"

shot() { # shot URL FILE WIDTH HEIGHT
	chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--hide-scrollbars --user-data-dir="$profile" \
		--screenshot="$2" --window-size="$3,$4" "$1" >/dev/null 2>&1
	if command -v pngquant >/dev/null; then
		pngquant --force --skip-if-larger --quality=60-90 --output "$2" -- "$2" || true
	fi
	echo "$2: $(wc -c <"$2") bytes"
}

shot "file://$out/report.svg" docs/report-chart.png 1100 830
shot "file://$out/report.html" docs/report-page.png 1200 2000
shot "file://$out/history.html" docs/history-page.png 1900 900
