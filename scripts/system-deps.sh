#!/bin/sh
# Installs the Debian packages the test suite drives as real parts, when missing.
# Without root the missing parts are reported and the tests that need them fail loudly.
set -eu
need=""
command -v openssl >/dev/null 2>&1 || need="$need openssl"
# headless Chromium for the survey media and case tracking page tests; `ip`/`unshare` for
# the survey network namespace
[ -x /usr/bin/chromium ] || need="$need chromium"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v unshare >/dev/null 2>&1 || need="$need util-linux"
# libfaketime for `make test-dates` and the future-date run of `make test`; stress-ng to
# load both cores while the suite runs (see README, "Tests on other dates and under load")
command -v faketime >/dev/null 2>&1 || need="$need faketime"
command -v stress-ng >/dev/null 2>&1 || need="$need stress-ng"
# promtool (`promtool check metrics`) judges GET /metrics; systemd-analyze judges the
# hardening of deploy/tongban.service
command -v promtool >/dev/null 2>&1 || need="$need prometheus"
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
# npm, to install the pinned npm packages the browser tests inject (scripts/npm-deps.sh)
command -v npm >/dev/null 2>&1 || need="$need npm"
# a Chinese font, so the console's screenshots show Chinese rather than empty boxes
[ -n "$(fc-list :lang=zh 2>/dev/null)" ] || need="$need fonts-wqy-microhei"
# coturn: the TURN relay the survey TURN-only network test runs (phone and node apart)
command -v turnserver >/dev/null 2>&1 || need="$need coturn"
# ffprobe (ffmpeg): an independent judge of the recorded segments' frame rate and size
command -v ffprobe >/dev/null 2>&1 || need="$need ffmpeg"
# PostgreSQL server programs (initdb, pg_ctl): the tests start a throwaway cluster and run
# the storage suites against it; haproxy: the load balancer in front of several workers
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
    || need="$need postgresql"
command -v haproxy >/dev/null 2>&1 || need="$need haproxy"
if [ -z "$need" ]; then exit 0; fi
if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages:$need"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
else
    echo "missing Debian packages:$need (run as root, or install them); tests that need them will fail" >&2
fi
