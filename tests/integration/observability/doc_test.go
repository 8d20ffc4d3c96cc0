// Package observability tests ledgerfence's operational surface against real
// components: Debian's Prometheus scraping filterd (or, while cmd/filterd is
// absent, a registry with the same metrics), promtool on the alert rules, and
// the Grafana dashboard's queries.
//
// LEDGERFENCE_FILTERD_BIN names a filterd binary to test instead of building
// cmd/filterd.
//
// Prometheus and promtool come from Debian's prometheus package (install.sh).
// Without them the tests skip, unless LEDGERFENCE_REQUIRE_INTEGRATION=1, when
// they fail.
package observability
