// Package deploycheck holds the checks of the files in deploy/ that Go does
// not compile: the systemd units (through systemd-analyze), the Dockerfile,
// the compose files and .dockerignore. Docker is not needed: the compose
// files are parsed and what they name is checked to exist.
package deploycheck
