#!/usr/bin/env bash
# Vendor Swagger UI (the npm package swagger-ui-dist) into the package, so /docs loads nothing from
# another origin. Pinned: VERSION below; the tarball's integrity is checked against the registry's.
#   scripts/refresh-swagger-ui.sh            # the pinned version
#   scripts/refresh-swagger-ui.sh 5.36.0     # another one (then update VERSION here and commit)
set -euo pipefail
VERSION="${1:-5.35.0}"
cd "$(dirname "$0")/.."
DEST=layers/gateway/llm_gateway/http/static/swagger-ui
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null)
tarball=$(ls "$work"/swagger-ui-dist-*.tgz)
expected=$(npm view "swagger-ui-dist@$VERSION" dist.integrity)
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$expected" != "$actual" ]; then
    echo "integrity mismatch: registry $expected, tarball $actual" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$work"
mkdir -p "$DEST"
rm -f "$DEST"/*
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE; do
    cp "$work/package/$f" "$DEST/$f"
done
printf 'swagger-ui-dist %s\n%s\n' "$VERSION" "$expected" > "$DEST/VERSION"
echo "vendored swagger-ui-dist $VERSION into $DEST"
