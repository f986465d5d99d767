#!/usr/bin/env bash
# Build Mailu admin's static assets on the host, doing what Mailu's core/admin/assets/Dockerfile does
# (node:21-alpine there; the host's node 20 + npm here, because build containers cannot reach npm).
#   usage: build_assets.sh SRC_ADMIN_DIR OUT_DIR
# SRC_ADMIN_DIR = Mailu's core/admin; OUT_DIR receives what that Dockerfile leaves in /work/static/
# (admin's Dockerfile: COPY --from=assets /work/static/ ./mailu/static/).
# Like Mailu's build there is no package-lock.json: npm resolves package.json's ranges at build time.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 SRC_ADMIN_DIR OUT_DIR" >&2
  exit 2
fi
src="$(cd "$1" && pwd)/assets"
out="$2"
for f in "$src/package.json" "$src/webpack.config.js" "$src/assets"; do
  [ -e "$f" ] || { echo "missing $f" >&2; exit 2; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/mailu-admin-assets.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

# WORKDIR /work ; COPY package.json ./
cp "$src/package.json" ./

# npm config set update-notifier false  (as env, so the host's ~/.npmrc is left alone)
export npm_config_update_notifier=false
# echo "#!/bin/sh" >/usr/local/bin/husky ; chmod +x  (a no-op husky first on PATH, not in /usr/local/bin)
mkdir -p "$work/.bin"
printf '#!/bin/sh\n' >"$work/.bin/husky"
chmod +x "$work/.bin/husky"
export PATH="$work/.bin:$PATH"

npm install --no-audit --no-fund
sed -i 's/#007bff/#55a5d9/' node_modules/admin-lte/build/scss/_bootstrap-variables.scss
mkdir assets
for l in ca da de:de-DE en:en-GB es:es-ES eu fa fr:fr-FR he hu is it:it-IT ja nb_NO:no-NB nl:nl-NL pl pt:pt-PT ru sv:sv-SE uk zh zh_TW:zh-HANT; do
  cp "node_modules/datatables.net-plugins/i18n/${l#*:}.json" "assets/${l%:*}.json"
done

# COPY assets/ ./assets/ ; COPY webpack.config.js ./
cp -r "$src/assets/." ./assets/
cp "$src/webpack.config.js" ./

node_modules/.bin/webpack-cli --color

# Resolved versions, for the record (stderr, not part of the output).
npm ls --depth=0 >&2 || true

mkdir -p "$out"
cp -r "$work/static/." "$out/"
