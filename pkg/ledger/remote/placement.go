package remote

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// Placements over filterd's REST API (placement_server.go): a placement
// is recorded by the holder of the client's token (a recorder's, Nova's
// word; a host agent's, its own host's), to which filterd's ledger applies
// access.MayRecordPlacement.

var _ ledger.Residency = (*Client)(nil)

// maxPlacementsAnswer bounds the answer of GET /v1/placements:
// ledger.MaxPlacements records of at most 4 KiB each (a record is about
// 600 bytes; its text fields are bounded).
const maxPlacementsAnswer = ledger.MaxPlacements * (4 << 10)

// RecordPlacement implements ledger.Residency (POST /v1/placements).
func (c *Client) RecordPlacement(ctx context.Context, p ledger.Placement) (ledger.PlacementRecord, bool, error) {
	p, err := ledger.NormalizePlacement(p)
	if err != nil {
		return ledger.PlacementRecord{}, false, err
	}
	resp, data, err := c.do(ctx, http.MethodPost, "/v1/placements", nil, p)
	if err != nil {
		return ledger.PlacementRecord{}, false, err
	}
	rec, err := decode[ledger.PlacementRecord](data)
	return rec, resp.Header.Get(headerChanged) == "true", err
}

// Placements implements ledger.Residency (GET /v1/placements).
func (c *Client) Placements(ctx context.Context, q ledger.PlacementQuery) ([]ledger.PlacementRecord, error) {
	v := url.Values{}
	if q.VM != "" {
		v.Set("vm", q.VM)
	}
	if q.Project != "" {
		v.Set("project", q.Project)
	}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339Nano))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	_, data, err := c.doLimit(ctx, http.MethodGet, "/v1/placements", v, nil, maxPlacementsAnswer)
	if err != nil {
		return nil, err
	}
	body, err := decode[placementsBody](data)
	if err != nil {
		return nil, err
	}
	if body.Placements == nil {
		body.Placements = []ledger.PlacementRecord{}
	}
	return body.Placements, nil
}
