// Package release holds the checks of what `make build` and `make release`
// produce: a static binary, and archives that match their SHA256SUMS. They
// cross-compile every platform, so they run only with BURROW_RELEASE_CHECK=1
// (`make release-check`, which `make test` runs).
package release
