//go:build race

package wanemu

const raceEnabled = true
