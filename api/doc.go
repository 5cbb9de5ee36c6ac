// Package api will serve microbox's REST API on echo: Judge0-compatible
// submission routes and the native /v1/runs (issue 3).
package api
