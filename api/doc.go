// Package api serves microbox's REST API on echo. The Judge0-compatible
// routes (POST/GET /submissions, /languages, /statuses, /about,
// /config_info) follow Judge0 CE's documented API, field types included, so
// its clients switch by changing a URL; submissions go onto the Redis queue
// and workers run them (Handler) in fresh microVMs. The native routes
// (POST /v1/runs, GET /v1/runs/{id}) take several files and many tests,
// compiled once and run in one VM, on the same queue.
package api
