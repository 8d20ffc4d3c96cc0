package fabric_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/decide/decidetest"
)

// The chaincode's Check, on the real network, answers the one table of
// decisions as every other entry point does (tests/integration/decisions
// runs the same table through filterd and ledgerctl).
func TestChaincodeCheckDecidesAsEveryEntryPoint(t *testing.T) {
	admin := connect(t, "hadmin")
	vmm := connect(t, "vmm1")
	c := context.Background()
	for _, h := range decidetest.Hosts() {
		if _, _, err := admin.PutHost(c, h); err != nil {
			t.Fatalf("put %s: %v", h.Name, err)
		}
	}
	for _, r := range decidetest.Regulations() {
		b, _ := json.Marshal(map[string]any{"allow": r.Allow})
		if _, _, err := vmm.PutRegulationJSON(c, r.Subject, b); err != nil {
			t.Fatalf("put %s: %v", r.Subject, err)
		}
	}
	reader := connect(t, "org1-user")
	for _, tc := range decidetest.Cases() {
		t.Run(tc.Name, func(t *testing.T) {
			rep, err := reader.Check(c, tc.VM, tc.Project, tc.Hosts, tc.Options)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.Check(rep); err != nil {
				t.Error(err)
			}
		})
	}
}
