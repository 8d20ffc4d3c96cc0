package fabric_test

import (
	"strings"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/access/accesstest"
)

// fabricBackend is the chaincode on the real network, each identity of the
// table enrolled through Org1's CA with its ledgerfence.role (and
// ledgerfence.host) in its certificate.
type fabricBackend struct{}

func (fabricBackend) As(t testing.TB, id accesstest.Identity) ledger.Ledger {
	enroll(t, "org1", id.Name, id.Role, id.Host)
	return connect(t, id.Name)
}

// IsWriter: Org1's identity whose subject's common name is id.Name
// ("x509::CN=<name>,OU=...::<issuer>").
func (fabricBackend) IsWriter(id accesstest.Identity, w ledger.Writer) bool {
	if w.MSP != net0.Get("ORG1_MSPID") {
		return false
	}
	i := strings.Index(w.ID, "CN="+id.Name)
	if i < 0 {
		return false
	}
	rest := w.ID[i+len("CN="+id.Name):]
	return strings.HasPrefix(rest, ",") || strings.HasPrefix(rest, ":")
}

// TestAccessMatrix plays package accesstest's table, the one cmd/filterd's
// tests play on the embedded ledger through filterd's REST API with writer
// tokens, against the chaincode: the same writes are allowed and refused,
// with the same words.
func TestAccessMatrix(t *testing.T) {
	needNetwork(t)
	accesstest.Run(t, ctx(t), fabricBackend{})
}
