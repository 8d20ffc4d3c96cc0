package fabric_test

// The chaincode definition's own endorsement policy: stated explicitly,
// never the channel's default, and with three organisations two of them,
// so that no single organisation writes alone.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-protos-go-apiv2/common"
	"github.com/hyperledger/fabric-protos-go-apiv2/msp"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/protobuf/proto"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
	"github.com/ledgerfence/ledgerfence/tests/integration/fabricnet"
)

// wantPolicy is the endorsement policy the harness defines the chaincode
// with, by number of organisations, as policyString renders it (Fabric
// compiles AND('Org1MSP.peer','Org2MSP.peer') to two out of two).
var wantPolicy = map[int]string{
	2: "OutOf(2, 'Org1MSP.peer', 'Org2MSP.peer')",
	3: "OutOf(2, 'Org1MSP.peer', 'Org2MSP.peer', 'Org3MSP.peer')",
}

func TestChaincodeDefinitionStatesItsOwnPolicy(t *testing.T) {
	needNetwork(t)
	checkDefinition(t, net0)
}

func TestThreeOrganisations(t *testing.T) {
	needNetwork(t)
	n := threeOrgNetwork(t)
	t.Run("definition", func(t *testing.T) { checkDefinition(t, n) })

	// Each case registers a host of its own (a host registered through one
	// MSP cannot be taken over through another), by a host admin of Org1MSP
	// or Org3MSP, with the endorsements of the organisations named only.
	cases := []struct {
		name      string
		writer    string
		endorsers []string // none: the ones the gateway plans
		committed bool
	}{
		{"Org1 alone", "hadmin", []string{"Org1MSP"}, false},
		{"Org3 alone", "hadmin-org3", []string{"Org3MSP"}, false},
		{"Org2 alone, for a writer of Org1", "hadmin", []string{"Org2MSP"}, false},
		{"Org1 and Org2", "hadmin", []string{"Org1MSP", "Org2MSP"}, true},
		{"Org1 and Org3", "hadmin", []string{"Org1MSP", "Org3MSP"}, true},
		{"Org2 and Org3, for a writer of Org1", "hadmin", []string{"Org2MSP", "Org3MSP"}, true},
		{"Org3 and Org2", "hadmin-org3", []string{"Org3MSP", "Org2MSP"}, true},
		{"as the gateway plans", "hadmin-org3", nil, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ctx(t)
			var opts []fabric.Option
			if tc.endorsers != nil {
				opts = append(opts, fabric.WithEndorsingOrganizations(tc.endorsers...))
			}
			h := filter.Host{Name: fmt.Sprintf("e3-%d-%s", i, runID), Country: "JP", Organizations: []string{"CompanyA"}}
			rec, changed, err := connectTo(t, n, tc.writer, opts...).PutHost(c, h)
			got, gerr := connectTo(t, n, tc.writer).GetHost(c, h.Name)
			if tc.committed {
				if err != nil || !changed || rec.TxID == "" {
					t.Fatalf("endorsed by %v: changed %v, %v", tc.endorsers, changed, err)
				}
				if gerr != nil || got.TxID != rec.TxID {
					t.Fatalf("read back %+v, %v; want tx %s", got, gerr, rec.TxID)
				}
				return
			}
			wantErr(t, err, ledger.ErrForbidden, "not endorsed")
			var ce *client.CommitError
			if !errors.As(err, &ce) || ce.Code != peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE {
				t.Fatalf("want a commit error ENDORSEMENT_POLICY_FAILURE, got %v", err)
			}
			if !errors.Is(gerr, ledger.ErrNotFound) {
				t.Fatalf("a transaction endorsed by %v alone was written: %+v, %v", tc.endorsers, got, gerr)
			}
		})
	}
}

// threeOrgNetwork is the suite's network when it has three organisations,
// or else one brought up for the test in a state folder and port range of
// its own, and taken down with it.
func threeOrgNetwork(t *testing.T) *fabricnet.Network {
	t.Helper()
	if len(net0.Orgs()) == 3 {
		return net0
	}
	n, err := fabricnet.Start(fabricnet.Options{Orgs: 3, Hosts: []string{"hm1"}, SearchFrom: 19250, Log: os.Stderr})
	if err != nil {
		t.Fatalf("a network of three organisations: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// connectTo opens the backend on network n as identity name, through its
// own organisation's peer; it is closed with the test.
func connectTo(tb testing.TB, n *fabricnet.Network, name string, opts ...fabric.Option) *fabric.Ledger {
	tb.Helper()
	org, err := n.OrgOf(name)
	if err != nil {
		tb.Fatal(err)
	}
	id := n.Identity(name)
	l, err := fabric.Connect(fabric.Config{
		PeerEndpoint: org.PeerAddress,
		TLSCAFile:    org.PeerTLSCA,
		ServerName:   org.PeerServerName,
		MSPID:        org.MSPID,
		CertFile:     id.Cert,
		KeyFile:      id.Key,
		Channel:      n.Get("CHANNEL"),
		Chaincode:    n.Get("CHAINCODE"),
	}, opts...)
	if err != nil {
		tb.Fatalf("connect as %s: %v", name, err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// checkDefinition asks every organisation's peer for the chaincode's
// committed definition (peer lifecycle chaincode querycommitted): each must
// say that every organisation approved it and that it carries its own
// signature policy, the harness's, not a reference to a channel policy.
func checkDefinition(t *testing.T, n *fabricnet.Network) {
	t.Helper()
	orgs := n.Orgs()
	want, ok := wantPolicy[len(orgs)]
	if !ok {
		t.Fatalf("a network of %d organisations", len(orgs))
	}
	for _, org := range orgs {
		cmd := n.PeerCommand(org, "lifecycle", "chaincode", "querycommitted",
			"--channelID", n.Get("CHANNEL"), "--name", n.Get("CHAINCODE"), "--output", "json")
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				out = ee.Stderr
			}
			t.Fatalf("querycommitted on %s's peer: %v\n%s", org.MSPID, err, out)
		}
		var def struct {
			Sequence            int             `json:"sequence"`
			ValidationParameter []byte          `json:"validation_parameter"`
			Approvals           map[string]bool `json:"approvals"`
		}
		if err := json.Unmarshal(out, &def); err != nil {
			t.Fatalf("querycommitted on %s's peer: %v\n%s", org.MSPID, err, out)
		}
		for _, o := range orgs {
			if !def.Approvals[o.MSPID] {
				t.Errorf("%s's peer: %s did not approve the definition: %v", org.MSPID, o.MSPID, def.Approvals)
			}
		}
		var ap peer.ApplicationPolicy
		if err := proto.Unmarshal(def.ValidationParameter, &ap); err != nil {
			t.Fatalf("%s's peer: the definition's validation parameter: %v", org.MSPID, err)
		}
		if ref := ap.GetChannelConfigPolicyReference(); ref != "" {
			t.Fatalf("%s's peer: the definition refers to the channel's policy %s instead of stating its own", org.MSPID, ref)
		}
		got, err := policyString(ap.GetSignaturePolicy())
		if err != nil {
			t.Fatalf("%s's peer: %v", org.MSPID, err)
		}
		if got != want {
			t.Errorf("%s's peer: the definition's endorsement policy is %s, want %s", org.MSPID, got, want)
		}
		t.Logf("%s's peer: sequence %d, approvals %v, endorsement policy %s", org.MSPID, def.Sequence, def.Approvals, got)
	}
}

// policyString renders a signature policy in Fabric's policy language, every
// n-of rule as OutOf: OutOf(2, 'Org1MSP.peer', 'Org2MSP.peer').
func policyString(env *common.SignaturePolicyEnvelope) (string, error) {
	if env == nil || env.Rule == nil {
		return "", errors.New("no signature policy")
	}
	var rule func(*common.SignaturePolicy) (string, error)
	rule = func(r *common.SignaturePolicy) (string, error) {
		switch t := r.Type.(type) {
		case *common.SignaturePolicy_SignedBy:
			if t.SignedBy < 0 || int(t.SignedBy) >= len(env.Identities) {
				return "", fmt.Errorf("a rule names identity %d of %d", t.SignedBy, len(env.Identities))
			}
			p := env.Identities[t.SignedBy]
			if p.PrincipalClassification != msp.MSPPrincipal_ROLE {
				return "", fmt.Errorf("a principal of class %v, not a role", p.PrincipalClassification)
			}
			var role msp.MSPRole
			if err := proto.Unmarshal(p.Principal, &role); err != nil {
				return "", err
			}
			return fmt.Sprintf("'%s.%s'", role.MspIdentifier, strings.ToLower(role.Role.String())), nil
		case *common.SignaturePolicy_NOutOf_:
			parts := make([]string, len(t.NOutOf.Rules))
			for i, sub := range t.NOutOf.Rules {
				s, err := rule(sub)
				if err != nil {
					return "", err
				}
				parts[i] = s
			}
			return fmt.Sprintf("OutOf(%d, %s)", t.NOutOf.N, strings.Join(parts, ", ")), nil
		}
		return "", fmt.Errorf("a rule of type %T", r.Type)
	}
	return rule(env.Rule)
}
