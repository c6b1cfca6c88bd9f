// Package browsertest checks what a real browser sees through Burrow: headless
// Chromium loads the demo page through a relay and an agent over HTTPS, and
// the page's own scripts exercise the video, the WebSocket and Stash's URL
// building.
package browsertest
