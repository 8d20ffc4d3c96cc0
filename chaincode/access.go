package chaincode

import (
	"encoding/base64"
	"strings"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

// identity is the submitter of a transaction, as the access rules see it.
type identity struct {
	msp  string
	id   string // "x509::<subject DN>::<issuer DN>", unique within the MSP
	role string // AttrRole, "" when absent
	host string // AttrHost, "" when absent
}

func (i identity) writer() ledger.Writer { return ledger.Writer{MSP: i.msp, ID: i.id} }

// caller reads the submitter's MSP, identity and ledgerfence attributes.
func caller(ctx Ctx) (identity, error) {
	ci := ctx.GetClientIdentity()
	if ci == nil {
		return identity{}, refuse(wire.CodeForbid, "the submitter's identity cannot be read")
	}
	msp, err := ci.GetMSPID()
	if err != nil || msp == "" {
		return identity{}, refuse(wire.CodeForbid, "the submitter's MSP cannot be read")
	}
	raw, err := ci.GetID()
	if err != nil {
		return identity{}, refuse(wire.CodeForbid, "only X.509 identities may write")
	}
	id := raw
	if dec, err := base64.StdEncoding.DecodeString(raw); err == nil {
		id = string(dec)
	}
	who := identity{msp: msp, id: id}
	if who.role, _, err = ci.GetAttributeValue(wire.AttrRole); err != nil {
		return identity{}, refuse(wire.CodeForbid, "the submitter's attributes cannot be read")
	}
	if who.host, _, err = ci.GetAttributeValue(wire.AttrHost); err != nil {
		return identity{}, refuse(wire.CodeForbid, "the submitter's attributes cannot be read")
	}
	return who, nil
}

func roleName(r string) string {
	if r == "" {
		return "none"
	}
	return r
}

// mayWriteHost applies the host rules: a host agent writes only the host its
// certificate names, a host admin any host of its organisation, and no host
// registered through one organisation (MSP) may be taken over through another.
func mayWriteHost(who identity, name string, old ledger.HostRecord, found bool) error {
	switch who.role {
	case wire.RoleHostAgent:
		if who.host == "" {
			return refuse(wire.CodeForbid, "a host agent's certificate must name its host (attribute %s)", wire.AttrHost)
		}
		if who.host != name {
			return refuse(wire.CodeForbid, "a host agent may write only its own host: this certificate names %s (attribute %s), not %s", who.host, wire.AttrHost, name)
		}
	case wire.RoleHostAdmin:
	default:
		return refuse(wire.CodeForbid, "writing a host needs %s %s or %s; this identity's role is %s",
			wire.AttrRole, wire.RoleHostAgent, wire.RoleHostAdmin, roleName(who.role))
	}
	if found && old.Writer.MSP != who.msp {
		return refuse(wire.CodeForbid, "host %s was registered through %s; %s may not take it over", name, old.Writer.MSP, who.msp)
	}
	return nil
}

// ownerMSP returns the MSP part of a regulation's owner ("MSP/ID").
func ownerMSP(owner string) string {
	msp, _, _ := strings.Cut(owner, "/")
	return msp
}

// mayWriteRegulation applies the regulation rules: a vmmanager or a policy
// admin may create a regulation and becomes its owner; only the owner or a
// policy admin of the owner's organisation may change or delete it.
func mayWriteRegulation(who identity, subj filter.Subject, old ledger.RegulationRecord, live bool, verb string) error {
	if !live {
		if who.role == wire.RoleVMManager || who.role == wire.RolePolicyAdmin {
			return nil
		}
		return refuse(wire.CodeForbid, "creating a regulation needs %s %s or %s; this identity's role is %s",
			wire.AttrRole, wire.RoleVMManager, wire.RolePolicyAdmin, roleName(who.role))
	}
	if who.writer().String() == old.Owner {
		return nil
	}
	if who.role == wire.RolePolicyAdmin && who.msp == ownerMSP(old.Owner) {
		return nil
	}
	return refuse(wire.CodeForbid, "only the owner of the regulation for %s (%s) or a %s of %s may %s it",
		subj, old.Owner, wire.RolePolicyAdmin, ownerMSP(old.Owner), verb)
}
