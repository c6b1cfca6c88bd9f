#!/bin/sh
# Builds Burrow for every release platform and packs one archive per platform:
#   $DIST/burrow_$VERSION_<os>_<arch>.tar.gz   the binary, README.md, LICENSE (if any),
#                                              deploy/relay.yaml, deploy/agent.yaml, deploy/systemd/
#   $DIST/SHA256SUMS                           `sha256sum -c SHA256SUMS` checks them
# Run it from the repository's root (`make release` does). The binaries are static
# (CGO_ENABLED=0); the archives are reproducible: same commit, same bytes.
set -eu

GO=${GO:-go}
VERSION=${VERSION:?set VERSION, e.g. VERSION=$(git describe --tags --always --dirty)}
DIST=${DIST:-dist}
# os/arch[/arm version]; the agent and the relay are one binary, so every platform gets both.
TARGETS=${TARGETS:-"linux/amd64 linux/arm64 linux/arm/7 darwin/amd64 darwin/arm64 windows/amd64"}

# Archive members get the commit's time, so that rebuilding a commit gives the same bytes.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

mkdir -p "$DIST"
rm -f "$DIST"/burrow_*.tar.gz "$DIST/SHA256SUMS"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for target in $TARGETS; do
	goos=${target%%/*}
	rest=${target#*/}
	goarch=${rest%%/*}
	goarm=
	name=$goarch
	if [ "$rest" != "$goarch" ]; then
		goarm=${rest#*/}
		name=${goarch}v$goarm # linux/arm/7 is armv7
	fi
	exe=burrow
	[ "$goos" = windows ] && exe=burrow.exe
	base=burrow_${VERSION}_${goos}_$name
	dir=$work/$base
	mkdir -p "$dir/deploy/systemd"

	echo "release: $base" >&2
	CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch GOARM=$goarm \
		"$GO" build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$dir/$exe" ./cmd/burrow

	cp README.md "$dir/"
	for f in LICENSE LICENSE.md LICENSE.txt; do
		if [ -f "$f" ]; then cp "$f" "$dir/"; fi
	done
	cp deploy/relay.yaml deploy/agent.yaml "$dir/deploy/"
	cp deploy/systemd/*.service "$dir/deploy/systemd/"
	chmod 0755 "$dir/$exe"
	find "$dir" -type f ! -name "$exe" -exec chmod 0644 {} +

	tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime="@$SOURCE_DATE_EPOCH" -cf - "$base" | gzip -n -9 >"$DIST/$base.tar.gz"
done

cd "$DIST"
if command -v sha256sum >/dev/null; then
	sha256sum burrow_*.tar.gz >SHA256SUMS
else
	shasum -a 256 burrow_*.tar.gz >SHA256SUMS
fi
echo "release: $(pwd)/SHA256SUMS" >&2
