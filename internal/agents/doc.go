// Package agents holds end-to-end tests of Ringmaster against device
// agents and update clients nobody on this project wrote, speaking their
// own protocols (Omaha through github.com/flatcar/go-omaha's client).
package agents
